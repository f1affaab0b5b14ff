"""``python -m trio_logd`` is ``trio-logd``."""

from __future__ import annotations

import sys

from trio_logd.cli.daemon import main

sys.exit(main())
