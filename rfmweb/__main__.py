"""``python -m rfmweb`` = the ``rfmweb`` command."""

import sys

from .cli import main

sys.exit(main())
