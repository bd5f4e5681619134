"""``python -m ecgwatch`` is the ``ecgwatch`` command."""

import sys

from ecgwatch.cli import main

sys.exit(main())
