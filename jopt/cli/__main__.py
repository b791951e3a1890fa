"""``python -m jopt.cli ...`` is ``jopt ...``."""

import sys

from jopt.cli import main

sys.exit(main())
