"""``python -m dcforge``: the command line (:mod:`dcforge.cli.main`)."""

import sys

from dcforge.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
