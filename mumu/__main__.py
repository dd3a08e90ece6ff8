"""Allow `python -m mumu`."""

import sys

from mumu.cli import main

sys.exit(main())
