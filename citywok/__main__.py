import sys

from citywok.cli import main

sys.exit(main())
