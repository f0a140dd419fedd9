"""``python -m prhlib``: the same command line as the ``prhlib`` entry point (see :mod:`prhlib.cli`)."""

import sys

from .cli import main

sys.exit(main())
