"""``python -m trio_asyncai``: the ``trio-asyncai`` command."""

import sys

from ._cli import main

sys.exit(main())
