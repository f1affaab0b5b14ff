"""At start the daemon raises its soft RLIMIT_NOFILE to the hard limit."""

from __future__ import annotations

import json
import os
import resource

from trio_logd.server._fdlimit import raise_nofile_limit


def test_soft_limit_is_raised_to_the_hard_limit() -> None:
    """A process started with soft 64 ends with soft == hard, and says what it was."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: lower the soft limit, then raise it as the daemon does
        code = 1
        try:
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
            got = raise_nofile_limit()
            now = resource.getrlimit(resource.RLIMIT_NOFILE)
            os.write(w, json.dumps([list(got), list(now), hard]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    out = os.read(r, 4096).decode()
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    got, now, hard = json.loads(out)
    if hard == resource.RLIM_INFINITY:
        assert (got[0], got[1]) == (64, now[0])
        assert now[0] > 64
    else:
        assert (got, now) == ([64, hard, hard], [hard, hard])
