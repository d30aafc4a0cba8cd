"""`python -m citywok.operator ARGS`: the same as `citywok operator ARGS`."""

from __future__ import annotations

import sys

from citywok.cli import main

if __name__ == "__main__":
    sys.exit(main(["operator", *sys.argv[1:]]))
