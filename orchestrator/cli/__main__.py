"""``python -m orchestrator.cli``: the same entry point as the ``orchestrator`` console script."""

import sys

from . import main

sys.exit(main())
