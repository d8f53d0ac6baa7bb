"""``python -m braincode``: the ``braincode`` command line."""

import sys

from braincode.cli import main

sys.exit(main())
