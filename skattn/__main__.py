"""``python -m skattn``: the ``skattn`` command."""

import sys

from .cli import main

sys.exit(main())
