"""The daemon's side of the store's helper process (``store/helper.py``).

How this works: at start the daemon spawns the helper with three socket
pairs (lanes for compression, spare files and syncs) and talks to it from
the event loop: a request is a ``sendmsg`` with fds attached, the reply a
``recvmsg``, awaited like any socket; no worker thread, so nothing in the
daemon waits for the GIL on the helper's behalf. One request per lane is in
flight at a time, and it finishes even if the caller is cancelled (the file
is being written). A helper that died (killed, out of memory) is noticed by
the next request, which fails; the request after it starts a new helper,
at most once per ``RESTART_DELAY``. While no helper runs, the callers fall
back to their worker threads (``Housekeeper``, ``_Writer``).

Fencing (issue 15): every request has a deadline (``SYNC_DEADLINE`` for syncs
and spare files, ``COMPRESS_DEADLINE`` for a compression, lowered to the
former once a shutdown begins: :meth:`StoreHelper.hurry`). A helper that
does not answer in time is hung (stopped, or stuck in the kernel): it is
killed, the request fails over to the worker threads like one to a dead
helper, and a new helper starts after ``RESTART_DELAY``; so acks and the
shutdown never wait on a helper for longer than a deadline. The helper is
given our pid and watches it through a pidfd: when the daemon dies, it exits
at once, whatever it was doing (each of its steps is crash-safe). A helper
that outlives its daemon anyway (it was stopped) cannot harm the next one:
compression claims its file and writes under a name of its own
(``store/_compress.py``). ``PR_SET_PDEATHSIG`` is not used: it fires when the
*thread* that spawned the helper ends, and trio spawns from a worker thread
that ends when idle.
"""

from __future__ import annotations

import array
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import orjson
import structlog
import trio

import trio_logd
from trio_logd.errors import UnsafeLogDir
from trio_logd.server._fdlimit import out_of_fds
from trio_logd.store import RotatedName
from trio_logd.store.helper import MAX_FDS, MAX_MESSAGE, MAX_SPARES

__all__ = [
    "COMPRESS_DEADLINE",
    "HELPER_NICE",
    "RESTART_DELAY",
    "SYNC_DEADLINE",
    "HelperUnavailable",
    "StoreHelper",
]

log = structlog.get_logger("trio_logd.helper")

#: The helper's nice value: compression gets the CPU when ingest does not want it.
HELPER_NICE: Final = 10
#: A helper that died is started again at most this often (seconds).
RESTART_DELAY: Final = 5.0
#: A sync or a request for spare files that gets no reply this long means a
#: hung helper (an fdatasync of a round on a loaded disk takes milliseconds to
#: a second or two; acknowledgements wait for it).
SYNC_DEADLINE: Final = 5.0
#: A compression gets longer: one file of up to ``max_file_bytes`` at a low
#: CPU priority (16 MiB: ~0.1 s zstd, ~0.5 s gzip on an idle core).
COMPRESS_DEADLINE: Final = 60.0
_FD_SIZE: Final = array.array("i").itemsize
#: The lanes, in the order of the helper's arguments (``store/helper.py``).
_COMPRESS, _SPARES, _SYNC = range(3)
#: What the helper must not inherit from the daemon's environment.
_DAEMON_ONLY_ENV: Final = frozenset(
    {"NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID"}
)
#: Where the ``trio_logd`` package lives: the helper imports the same one.
_PACKAGE_ROOT: Final = str(Path(trio_logd.__file__).resolve().parent.parent)


class HelperUnavailable(OSError):
    """No helper process runs (it could not start, or died): do the work in process."""


class _Lane:
    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.lock = trio.Lock()


class StoreHelper:
    """Compression, spare files and syncs in a process of their own (see the module doc).

    Args:
        nice: the helper's nice value.
        command: the helper's argv before its fds (tests replace it).
        sync_deadline: seconds a sync or spares request may take.
        compress_deadline: seconds a compression may take.
    """

    def __init__(
        self,
        *,
        nice: int = HELPER_NICE,
        command: list[str] | None = None,
        sync_deadline: float = SYNC_DEADLINE,
        compress_deadline: float = COMPRESS_DEADLINE,
        on_fd_shortage: Callable[[], None] = lambda: None,
    ) -> None:
        self.nice = nice
        #: called when a start finds no descriptors for its socket pairs (counted)
        self.on_fd_shortage = on_fd_shortage
        self.sync_deadline = sync_deadline
        self._deadlines = {
            _COMPRESS: compress_deadline,
            _SPARES: sync_deadline,
            _SYNC: sync_deadline,
        }
        #: requests waiting for a reply now (their deadlines; ``hurry`` lowers them)
        self._waiting: set[trio.CancelScope] = set()
        #: helpers killed for missing a deadline, since start
        self.hung = 0
        self.command = command or [sys.executable, "-m", "trio_logd.store.helper"]
        self.pid: int | None = None
        self.starts = 0
        self._proc: trio.Process | None = None
        self._lanes: list[_Lane] | None = None
        self._next_start = -float("inf")
        self._closed = False
        #: helpers seen to fail, until reaped (no zombie is left behind)
        self._dead: list[trio.Process] = []

    @property
    def running(self) -> bool:
        """A helper was started and has not been seen to fail."""
        return self._lanes is not None

    def status(self) -> dict[str, Any]:
        """For ``trio-logd status``: the helper's pid (``None`` while none runs), its starts."""
        return {"pid": self.pid if self.running else None, "starts": self.starts, "hung": self.hung}

    async def start(self) -> bool:
        """Start the helper if none runs (and the restart delay allows); True if one runs."""
        if self._lanes is not None:
            return True
        self._dead = [p for p in self._dead if p.poll() is None]  # poll() reaps
        if self._closed or trio.current_time() < self._next_start:
            return False
        self._next_start = trio.current_time() + RESTART_DELAY
        pairs: list[tuple[socket.socket, socket.socket]] = []
        try:
            # the pairs made before a failure stay in the list, to be closed
            pairs.extend(
                socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                for _ in (_COMPRESS, _SPARES, _SYNC)
            )
        except OSError as exc:  # out of descriptors (EMFILE): threads until the next try
            for a, b in pairs:
                a.close()
                b.close()
            if out_of_fds(exc):
                self.on_fd_shortage()
            log.error("helper_start_failed", error=str(exc), fallback="worker threads")
            return False
        theirs = [b.fileno() for _a, b in pairs]
        # not systemd's: its notify socket and activated fds are the daemon's alone
        env = {k: v for k, v in os.environ.items() if k not in _DAEMON_ONLY_ENV}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        try:
            proc = await trio.lowlevel.open_process(
                [*self.command, *map(str, theirs), str(self.nice), str(os.getpid())],
                pass_fds=theirs,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
                start_new_session=False,
            )
        except OSError as exc:
            for a, b in pairs:
                a.close()
                b.close()
            log.error("helper_start_failed", error=str(exc), fallback="worker threads")
            return False
        finally:
            for _a, b in pairs:
                b.close()
        self._proc = proc
        self.pid = proc.pid
        self.starts += 1
        self._lanes = [_Lane(trio.socket.from_stdlib_socket(a)) for a, _b in pairs]
        log.info("helper_started", pid=proc.pid, starts=self.starts)
        return True

    def _failed(self, why: str, proc: trio.Process | None, *, hung: bool = False) -> None:
        """Helper *proc* failed (or hung): kill it, stop using it. Later helpers are not touched."""
        if self._lanes is None or proc is not self._proc:
            return
        for lane in self._lanes:
            lane.sock.close()
        self._lanes = None
        if self._proc is not None:
            code = self._proc.poll()
            if hung:
                self.hung += 1
                log.error("helper_hung", pid=self.pid, error=why, action="killed")
            else:
                log.error("helper_lost", pid=self.pid, returncode=code, error=why)
            if code is None:
                self._proc.kill()  # SIGKILL: a stopped helper dies too
                self._dead.append(self._proc)  # reaped by a later start() or aclose()
        self._proc = None

    def hurry(self) -> None:
        """A shutdown began: no request may wait longer than ``sync_deadline`` from now."""
        for i in self._deadlines:
            self._deadlines[i] = min(self._deadlines[i], self.sync_deadline)
        latest = trio.current_time() + self.sync_deadline
        for scope in self._waiting:
            scope.deadline = min(scope.deadline, latest)

    async def _call(
        self, which: int, fds_out: list[int], req: dict[str, Any], nfds: int = 0
    ) -> tuple[dict[str, Any], list[int]]:
        if not await self.start() or self._lanes is None:
            why = "no helper process"
            raise HelperUnavailable(why)
        lane, proc = self._lanes[which], self._proc
        payload = orjson.dumps(req)
        fds = array.array("i", fds_out)
        deadline = self._deadlines[which]
        with trio.CancelScope(shield=True):  # a request that started finishes, or times out
            async with lane.lock:
                with trio.move_on_after(deadline) as timer:
                    self._waiting.add(timer)
                    try:
                        await lane.sock.sendmsg(
                            [payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
                        )
                        msg, anc, _flags, _addr = await lane.sock.recvmsg(
                            MAX_MESSAGE,
                            socket.CMSG_SPACE(max(nfds, 1) * _FD_SIZE),
                            socket.MSG_CMSG_CLOEXEC,
                        )
                    except (OSError, trio.ClosedResourceError) as exc:
                        self._failed(str(exc), proc)
                        why = f"helper process: {exc}"
                        raise HelperUnavailable(why) from exc
                    finally:
                        self._waiting.discard(timer)
                if timer.cancelled_caught:
                    why = f"no reply within {deadline:g} s"
                    self._failed(why, proc, hung=True)
                    why = f"helper process: {why}"
                    raise HelperUnavailable(why)
        got = array.array("i")
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got.frombytes(data[: len(data) - len(data) % _FD_SIZE])
        if not msg:
            for fd in got:
                os.close(fd)
            self._failed("end of file", proc)
            why = "helper process exited"
            raise HelperUnavailable(why)
        return orjson.loads(msg), list(got)

    async def compress(
        self, dir_fd: int, src: RotatedName, method: str, *, sync: bool, what: str
    ) -> tuple[RotatedName, int]:
        """``_compress.compress_file`` in the helper; same arguments, result and errors.

        Raises:
            HelperUnavailable: no helper runs; nothing was done.
        """
        req = {"name": src.format(), "method": method, "sync": sync, "what": what}
        reply, _ = await self._call(_COMPRESS, [dir_fd], req)
        if "size" in reply:
            dst = RotatedName.parse(reply["name"])
            if dst is None:  # pragma: no cover - the helper formats what it parsed
                raise OSError(0, f"helper replied with a bad name: {reply['name']!r}")
            return dst, int(reply["size"])
        raise _reply_error(reply)

    async def spares(self, dir_fd: int, count: int) -> tuple[list[int], int]:
        """Make *count* unnamed files in *dir_fd*; their fds and the directory's inode.

        Raises:
            OSError: as ``_layout.make_unnamed``.
            HelperUnavailable: no helper runs; nothing was done.
        """
        count = min(count, MAX_SPARES)
        reply, fds = await self._call(_SPARES, [dir_fd], {"count": count}, count)
        if "ino" in reply:
            return fds, int(reply["ino"])
        for fd in fds:
            os.close(fd)
        raise _reply_error(reply)

    async def sync(self, steps: list[tuple[int, str, str]]) -> None:
        """Follow ``StoreWriter.sync_steps`` in the helper, in order; the fds stay ours.

        Raises:
            OSError: a step failed (later steps were not done); its
                ``filename`` says which (the step's *what*).
            HelperUnavailable: no helper runs, or it died; some steps may be done.
        """
        for i in range(0, len(steps), MAX_FDS):
            chunk = steps[i : i + MAX_FDS]
            req = {"steps": [[kind, what] for _fd, kind, what in chunk]}
            reply, _ = await self._call(_SYNC, [fd for fd, _kind, _what in chunk], req)
            if reply:
                err = _reply_error(reply)
                if isinstance(err, OSError):
                    err.filename = reply.get("what", "sync")
                raise err

    async def aclose(self) -> None:
        """Close the lanes (the helper exits after its requests in progress) and reap it.

        Bounded: a request in progress ends by its deadline (:meth:`hurry` is
        called first), and a helper that has not exited ``sync_deadline``
        seconds after its lanes closed is killed.
        """
        self._closed = True
        self.hurry()
        proc = self._proc
        if self._lanes is not None:
            for lane in self._lanes:
                async with lane.lock:
                    lane.sock.close()
            self._lanes = None
        self._proc = None
        for dead in self._dead:
            with trio.CancelScope(shield=True):
                await dead.wait()  # killed: exits at once
        self._dead = []
        if proc is not None:
            with trio.move_on_after(self.sync_deadline) as scope:
                scope.shield = True
                await proc.wait()
            if proc.returncode is None:
                log.error("helper_hung", pid=proc.pid, error="did not exit", action="killed")
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()


def _reply_error(reply: dict[str, Any]) -> BaseException:
    if reply.get("gone"):
        return FileNotFoundError(2, "gone")
    if "unsafe" in reply:
        return UnsafeLogDir(str(reply["unsafe"]))
    return OSError(int(reply.get("errno", 0)), str(reply.get("error", "helper failed")))
