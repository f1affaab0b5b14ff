"""Suite-wide set-up: no test reads the host's ``/etc/subuid`` or ``/etc/subgid``.

A config that leaves ``[identity] subuid_file``/``subgid_file`` empty reads
the files named by these variables (``config.SUBUID_ENV``); every daemon a
test starts inherits them. Tests of subordinate ids write files of their own
and name them in their config.
"""

from __future__ import annotations

import os

from trio_logd.config import SUBGID_ENV, SUBUID_ENV

os.environ[SUBUID_ENV] = "/nonexistent/trio-logd-tests/subuid"
os.environ[SUBGID_ENV] = "/nonexistent/trio-logd-tests/subgid"
