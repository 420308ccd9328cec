"""``python -m securedb``: the ``securedb`` command."""

from __future__ import annotations

import sys

from securedb.cli import main

sys.exit(main())
