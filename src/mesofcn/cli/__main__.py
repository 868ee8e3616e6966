"""`python -m mesofcn.cli ...`: the same as the `mesofcn` console script."""

import sys

from .commands import main

sys.exit(main())
