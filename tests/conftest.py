import os

# Under CI a missing service fails the run; locally it skips (see tests/integration/conftest.py).
CI = bool(os.environ.get("CI"))
