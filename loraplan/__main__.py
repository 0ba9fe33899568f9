"""`python -m loraplan` runs the CLI."""

import sys

from loraplan.cli import main

sys.exit(main())
