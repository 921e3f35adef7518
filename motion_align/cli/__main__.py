"""``python -m motion_align.cli``: the ``motion-align`` command."""

import sys

from motion_align.cli import main

sys.exit(main())
