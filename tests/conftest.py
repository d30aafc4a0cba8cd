"""Suite-wide settings."""

import os

# The repository's `operator/` folder would shadow the standard library's `operator` in any Python
# subprocess started from the repository root with `-m` or `-c`: keep the cwd off their sys.path.
os.environ["PYTHONSAFEPATH"] = "1"
