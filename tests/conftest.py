import os

import pytest

# Under CI a missing service fails the run; locally it skips (see tests/integration/conftest.py).
CI = bool(os.environ.get("CI"))


def require(ok: bool, what: str) -> None:
    """A missing service fails under CI (CI=true) and skips a local run."""
    if ok:
        return
    message = f"{what} is not available; start it with 'scripts/dev setup'"
    if CI:
        pytest.fail(message + " (CI: a missing service is a failure)")
    pytest.skip(message + " (locally skipped; under CI this fails)")


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from their defaults only: nothing of this shell's environment, nor of the
    integration tests' (they set ORCHESTRATOR_* for their stacks, for the whole session)."""
    for name in list(os.environ):
        if name.startswith("ORCHESTRATOR_TEST_"):  # where the tests' own services are
            continue
        if name.startswith("ORCHESTRATOR_") or name in ("REDIS_URL", "DATABASE_URL"):
            monkeypatch.delenv(name)


def redis_test_url(db: int) -> str:
    """A database of the local Redis that scripts/dev starts (its unix socket)."""
    from orchestrator.core import defaults

    return f"unix://{defaults.REDIS_SOCKET}?db={db}"


def postgres_test_url() -> str:
    """The PostgreSQL database the tests may use (ORCHESTRATOR_TEST_POSTGRES_URL, which scripts/dev
    test sets after starting a local server): a failure under CI when missing or unreachable."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    url = os.environ.get("ORCHESTRATOR_TEST_POSTGRES_URL")
    reachable = False
    if url:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as connection:
                reachable = connection.execute(text("select 1")).scalar() == 1
        except SQLAlchemyError:
            reachable = False
        finally:
            engine.dispose()
    require(reachable, f"PostgreSQL at ORCHESTRATOR_TEST_POSTGRES_URL ({url or 'not set'})")
    assert url is not None
    return url
