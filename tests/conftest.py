import os

import pytest

# Under CI a missing service fails the run; locally it skips (see tests/integration/conftest.py).
CI = bool(os.environ.get("CI"))


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from their defaults only: nothing of this shell's environment, nor of the
    integration tests' (they set ORCHESTRATOR_* for their stacks, for the whole session)."""
    for name in list(os.environ):
        if name.startswith("ORCHESTRATOR_") or name in ("REDIS_URL", "DATABASE_URL"):
            monkeypatch.delenv(name)
