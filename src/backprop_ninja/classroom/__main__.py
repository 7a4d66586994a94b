"""``python -m backprop_ninja.classroom COMMAND``: the same as ``python -m backprop_ninja.grading``."""

import sys

from ..grading.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
