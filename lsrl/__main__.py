"""``python -m lsrl``: the command line, as the installed ``lsrl`` command runs it."""

import sys

from lsrl.cli import main

sys.exit(main())
