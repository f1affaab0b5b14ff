"""The store's helper process: compression, spare files and syncs, beside the daemon.

How this works: the daemon starts ``python -m trio_logd.store.helper C F S``
with three ``SOCK_SEQPACKET`` sockets, one per lane: C compresses rotated
files (``_compress.compress_file``), F makes spare files (``O_TMPFILE``, see
``StoreWriter.prepare_spares``), S syncs what the writer wrote (group commit,
``StoreWriter.sync_steps``). Each lane is served by a thread of its own, one
request at a time, so a long compression never delays a sync or the next
rotation's files. A request is one message, a JSON object with fds attached
(``SCM_RIGHTS``: the uid directory, or the files to sync); the reply is one
message, with the spare files' fds attached. The work is the same as in the
daemon's worker threads; it runs here because there it took the daemon's
GIL back after every system call (a dozen per compressed file, several per
sync), and each hand-over stalled the event loop.

Compression runs at a lower CPU priority (``nice``, per thread on Linux;
the other lanes are waited for, and take little CPU). The helper ignores
``SIGINT``, ``SIGTERM`` and ``SIGHUP`` (a request in progress finishes) and
exits when the daemon closes its sockets (a lane that reads end-of-file
ends), or at once when the daemon dies, whatever it is doing: a thread
watches the daemon through a pidfd (every step of its work is crash-safe,
and a new daemon's helper must not find this one at work). It opens nothing
by name outside the directories it is handed.
"""

from __future__ import annotations

import array
import contextlib
import os
import select
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any, Final

import orjson

from trio_logd.errors import UnsafeLogDir
from trio_logd.store import _compress, _layout
from trio_logd.store._layout import RotatedName

__all__ = ["MAX_FDS", "MAX_MESSAGE", "compress_request", "main", "spares_request", "sync_request"]

#: Requests and replies are small JSON objects (a sync of MAX_FDS steps: ~3 KiB).
MAX_MESSAGE: Final = 16384
#: Spare files per request, at most (the reply's fds must fit one message).
MAX_SPARES: Final = 16
#: Descriptors per request, at most (the kernel takes up to 253 in one message).
MAX_FDS: Final = 64
_FD_SIZE: Final = array.array("i").itemsize


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, UnsafeLogDir):
        return {"unsafe": str(exc)}
    if isinstance(exc, OSError):
        return {"errno": exc.errno or 0, "error": exc.strerror or str(exc)}
    return {"errno": 0, "error": f"{type(exc).__name__}: {exc}"}


def compress_request(dir_fd: int, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """Compress ``req["name"]`` in *dir_fd*; the reply says the new size, or why not."""
    src = RotatedName.parse(req["name"])
    if src is None or src.suffix:
        return {"errno": 0, "error": f"not an uncompressed rotated file: {req['name']!r}"}, []
    try:
        dst, size = _compress.compress_file(
            dir_fd, src, req["method"], sync=bool(req["sync"]), what=req["what"]
        )
    except FileNotFoundError:
        return {"gone": True}, []
    except (OSError, UnsafeLogDir) as exc:
        return _error(exc), []
    return {"name": dst.format(), "size": size}, []


def spares_request(dir_fd: int, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """Make ``req["count"]`` unnamed files in *dir_fd*; the reply carries them."""
    try:
        fds = _layout.make_unnamed(dir_fd, min(int(req["count"]), MAX_SPARES))
        ino = os.fstat(dir_fd).st_ino
    except OSError as exc:
        return _error(exc), []
    return {"ino": ino}, fds


Handler = Callable[[list[int], dict[str, Any]], tuple[dict[str, Any], list[int]]]


def sync_request(fds: list[int], req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """Sync *fds* in order (``StoreWriter.sync_steps``); stop at the first failure."""
    steps = req["steps"]
    if len(steps) != len(fds):
        return {"errno": 0, "error": "one step per fd expected", "what": "sync"}, []
    for fd, (kind, what) in zip(fds, steps, strict=True):
        try:
            _layout.sync_step(fd, kind)
        except OSError as exc:
            return {**_error(exc), "what": what}, []
    return {}, []


def _one_dir(
    handle: Callable[[int, dict[str, Any]], tuple[dict[str, Any], list[int]]],
) -> Handler:
    def handler(fds: list[int], req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        if len(fds) != 1:
            return {"errno": 0, "error": "expected one directory fd"}, []
        return handle(fds[0], req)

    return handler


def serve_lane(sock: socket.socket, handle: Handler) -> None:
    """Answer *sock*'s requests one at a time until end-of-file."""
    anc_size = socket.CMSG_SPACE(MAX_FDS * _FD_SIZE)
    while True:
        try:
            msg, anc, _flags, _addr = sock.recvmsg(MAX_MESSAGE, anc_size, socket.MSG_CMSG_CLOEXEC)
        except ConnectionError:
            return
        if not msg:
            return
        fds = array.array("i")
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % _FD_SIZE])
        out: list[int] = []
        try:
            reply, out = handle(list(fds), orjson.loads(msg))
        except Exception as exc:  # a malformed request: answered, the lane goes on
            reply, out = _error(exc), []
        finally:
            for fd in fds:
                os.close(fd)
        try:
            anc_out = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", out))] if out else []
            sock.sendmsg([orjson.dumps(reply)], anc_out)
        except OSError:
            return
        finally:
            for fd in out:
                os.close(fd)


#: Without a pidfd (kernels before 5.3), how often the parent is looked at.
_PARENT_POLL: Final = 0.5


def watch_daemon(pid: int) -> None:
    """Exit this process at once when process *pid*, our parent (the daemon), is gone."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        fd = -1
    if os.getppid() != pid:  # it died before we looked (our parent is now init)
        os._exit(0)
    if fd >= 0:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll():
            pass
    else:
        while os.getppid() == pid:
            threading.Event().wait(_PARENT_POLL)
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    """``python -m trio_logd.store.helper COMPRESS_FD SPARES_FD SYNC_FD [NICE [DAEMON_PID]]``."""
    args = sys.argv[1:] if argv is None else argv
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    if len(args) > 4:
        threading.Thread(target=watch_daemon, args=(int(args[4]),), daemon=True).start()
    compress, spares, sync = (socket.socket(fileno=int(a)) for a in args[:3])
    for sock, handler in ((spares, _one_dir(spares_request)), (sync, sync_request)):
        threading.Thread(target=serve_lane, args=(sock, handler), daemon=True).start()
    if len(args) > 3:  # this thread only (Linux): syncs and spare files are waited for
        with contextlib.suppress(OSError):  # lowering one's priority is always allowed
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), int(args[3]))
    serve_lane(compress, _one_dir(compress_request))
    return 0


if __name__ == "__main__":
    sys.exit(main())
