"""systemd integration without libsystemd: socket activation and ``sd_notify``.

How this works. *Socket activation* (sd_listen_fds(3)): systemd passes
listening sockets as fds 3, 4, … and says so in ``LISTEN_PID`` (the pid they
are meant for: ours, or they are not for us), ``LISTEN_FDS`` (how many) and
``LISTEN_FDNAMES`` (colon-separated ``FileDescriptorName=``s). We take an fd
named ``ingest`` (or, unnamed, the one ``SOCK_STREAM`` fd) as the ingest
socket and one named ``datagram`` (or the one ``SOCK_DGRAM`` fd) as the
datagram socket, check that each is an ``AF_UNIX`` socket of the right type
bound to the path the config names (clients find the socket through the
config), and set ``SO_PASSCRED`` on it (and on a datagram socket
``_sockets.pass_labels``). The socket unit should have set it
already (``PassCredentials=yes``): the option must be on the listening socket
before clients connect, or bytes queued before we set it are reported as pid
0 / uid 65534; we warn when it was not. The variables are removed from our
environment, as ``sd_listen_fds(1)`` does. The control socket is never
taken from systemd (SPEC §7): ``SO_PEERCRED`` on it must name the daemon.

*Notification* (sd_notify(3)): one datagram of ``KEY=VALUE`` lines to the
``AF_UNIX`` socket named by ``NOTIFY_SOCKET`` (a leading ``@`` means the
abstract namespace). Without the variable every call does nothing, so the
daemon calls the notifier unconditionally. Sending never blocks and never
raises: systemd going away must not stop the daemon.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Final

import structlog

from trio_logd.config import Config
from trio_logd.errors import LogdError
from trio_logd.server._sockets import BoundSocket, pass_labels

__all__ = [
    "ActivatedSockets",
    "Notifier",
    "listen_fds",
    "take_activated_sockets",
    "watchdog_interval",
]

log = structlog.get_logger("trio_logd.systemd")

#: sd_listen_fds(3): passed fds start at 3 (after stdin, stdout, stderr).
SD_LISTEN_FDS_START: Final = 3
#: ``FileDescriptorName=`` values the daemon knows (conf/trio-logd*.socket).
INGEST_NAME: Final = "ingest"
DATAGRAM_NAME: Final = "datagram"
_ROLE_BY_TYPE: Final[dict[int | None, str]] = {
    int(socket.SOCK_STREAM): INGEST_NAME,
    int(socket.SOCK_DGRAM): DATAGRAM_NAME,
}
_ENV_VARS: Final = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def listen_fds(
    environ: MutableMapping[str, str] | None = None, *, pid: int | None = None
) -> list[tuple[int, str]]:
    """The fds systemd passed to this process, with their names (sd_listen_fds_with_names).

    The variables are removed from *environ* whatever they hold, so that a
    child process never takes them for its own.

    Args:
        environ: the environment (``os.environ`` when ``None``).
        pid: our pid (``os.getpid()`` when ``None``).

    Returns:
        ``(fd, name)`` pairs from fd 3 on; empty when ``LISTEN_PID`` is not
        our pid or the variables are absent or malformed. An fd without a
        name is named ``"unknown"``, as systemd does.
    """
    env = os.environ if environ is None else environ
    values = {key: env.pop(key, None) for key in _ENV_VARS}
    listen_pid, count = values["LISTEN_PID"], values["LISTEN_FDS"]
    me = os.getpid() if pid is None else pid
    if not (listen_pid and count and listen_pid.isdigit() and count.isdigit()):
        return []
    if int(listen_pid) != me:
        return []
    n = int(count)
    names = (values["LISTEN_FDNAMES"] or "").split(":")
    if len(names) != n:
        names = ["unknown"] * n
    return [(SD_LISTEN_FDS_START + i, names[i]) for i in range(n)]


@dataclass(eq=False)
class ActivatedSockets:
    """Sockets inherited from systemd; the daemon closes them but never unlinks their paths."""

    ingest: BoundSocket | None = None
    datagram: BoundSocket | None = None
    #: fds passed that the daemon does not use (closed at once)
    others: list[int] = field(default_factory=list)

    def close(self) -> None:
        """Close our copies (systemd keeps its own, and the paths stay)."""
        for bound in (self.ingest, self.datagram):
            if bound is not None:
                bound.sock.close()


def _describe(kind: int) -> str:
    return "SOCK_STREAM" if kind == socket.SOCK_STREAM else "SOCK_DGRAM"


def _adopt(fd: int, name: str, *, kind: int, path: str, key: str) -> BoundSocket:
    """Check one passed fd and make it a ``BoundSocket`` with ``SO_PASSCRED`` on.

    Raises:
        LogdError: not a socket, not ``AF_UNIX``, the wrong type, not
            listening, or bound elsewhere than *path*.
    """
    where = f"socket activation: fd {fd} ({name})"
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        msg = f"{where}: cannot use it: {exc.strerror}"
        raise LogdError(msg) from exc
    if not stat.S_ISSOCK(mode):
        msg = f"{where}: expected a socket for [daemon] {key}, got another kind of file"
        raise LogdError(msg)
    sock = socket.socket(fileno=fd)
    try:
        if sock.family != socket.AF_UNIX or sock.type != kind:
            msg = (
                f"{where}: expected an AF_UNIX {_describe(kind)} socket for [daemon] {key}, "
                f"got {sock.family.name} {sock.type.name}"
            )
            raise LogdError(msg)
        if kind == socket.SOCK_STREAM and not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            msg = f"{where}: expected a listening socket for [daemon] {key}"
            raise LogdError(msg)
        bound = sock.getsockname()
        if not _same_path(bound, path):
            msg = (
                f"{where}: it is bound to {bound!r} but [daemon] {key} is {path!r}; "
                "clients find the socket through the config, so make them agree "
                "(ListenStream=/ListenDatagram= in the .socket unit)"
            )
            raise LogdError(msg)
        os.set_inheritable(fd, False)
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED):
            log.warning(
                "passcred_was_off",
                fd=fd,
                hint="add PassCredentials=yes to the .socket unit: the first bytes of "
                "connections queued before the daemon started are reported as pid 0, uid 65534",
            )
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if kind == socket.SOCK_DGRAM:
            # datagrams queued before this may still carry fds: the reader closes them
            pass_labels(sock)
        inode = os.stat(path).st_ino
    except BaseException:
        sock.detach()  # not ours to close on error: the caller reports and exits
        raise
    return BoundSocket(sock, path, inode)


def _same_path(bound: object, path: str) -> bool:
    if not isinstance(bound, str) or not bound:
        return False  # unnamed or abstract
    if os.path.normpath(bound) == os.path.normpath(path):
        return True
    try:  # the same socket reached through a symlinked directory
        return os.path.samestat(os.stat(bound), os.stat(path))
    except OSError:
        return False


def _sock_type(fd: int) -> int | None:
    s = socket.socket(fileno=fd)
    try:
        return int(s.type) if s.family == socket.AF_UNIX else None
    finally:
        s.detach()


def take_activated_sockets(
    config: Config, environ: MutableMapping[str, str] | None = None, *, pid: int | None = None
) -> ActivatedSockets:
    """Take the ingest and datagram sockets passed by systemd, if any.

    An fd named ``ingest`` is the ingest socket, one named ``datagram`` the
    datagram socket; fds with other names (systemd's default is the unit's
    name) are told apart by type.

    Args:
        config: the paths the sockets must be bound to.
        environ: the environment (``os.environ`` when ``None``).
        pid: our pid (``os.getpid()`` when ``None``).

    Returns:
        The sockets; both ``None`` when not socket-activated.

    Raises:
        LogdError: a passed fd is not usable as named, two fds claim the
            same role, or a datagram socket is passed but ``[daemon]
            datagram_socket`` is off.
    """
    passed = listen_fds(environ, pid=pid)
    result = ActivatedSockets()
    if not passed:
        return result
    try:
        for fd, name in passed:
            role = name if name in (INGEST_NAME, DATAGRAM_NAME) else None
            if role is None:
                kind = _sock_type_or_none(fd)
                role = {
                    int(socket.SOCK_STREAM): INGEST_NAME,
                    int(socket.SOCK_DGRAM): DATAGRAM_NAME,
                }.get(-1 if kind is None else kind)
            if role is None:
                msg = (
                    f"socket activation: fd {fd} ({name}): expected FileDescriptorName="
                    f"{INGEST_NAME} or {DATAGRAM_NAME}, or an AF_UNIX stream or datagram socket"
                )
                raise LogdError(msg)
            if role == INGEST_NAME:
                if result.ingest is not None:
                    msg = f"socket activation: fd {fd} ({name}) is a second ingest socket"
                    raise LogdError(msg)
                result.ingest = _adopt(
                    fd, name, kind=socket.SOCK_STREAM, path=config.daemon.socket, key="socket"
                )
            else:
                if config.daemon.datagram_socket is None:
                    msg = (
                        f"socket activation: fd {fd} ({name}) is a datagram socket but "
                        '[daemon] datagram_socket is "" (off): set it to the ListenDatagram= path'
                    )
                    raise LogdError(msg)
                if result.datagram is not None:
                    msg = f"socket activation: fd {fd} ({name}) is a second datagram socket"
                    raise LogdError(msg)
                result.datagram = _adopt(
                    fd,
                    name,
                    kind=socket.SOCK_DGRAM,
                    path=config.daemon.datagram_socket,
                    key="datagram_socket",
                )
    except BaseException:
        result.close()
        raise
    return result


def _sock_type_or_none(fd: int) -> int | None:
    try:
        return _sock_type(fd)
    except OSError:
        return None


# -- sd_notify ---------------------------------------------------------------


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends ``sd_notify`` messages to ``$NOTIFY_SOCKET``; does nothing without it.

    Args:
        address: the socket path (``@name`` for the abstract namespace), or
            ``None`` for a notifier that does nothing.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """The notifier ``$NOTIFY_SOCKET`` asks for (removed from *environ*, as libsystemd can)."""
        env = os.environ if environ is None else environ
        return cls(env.pop("NOTIFY_SOCKET", None))

    @property
    def enabled(self) -> bool:
        """Whether messages go anywhere."""
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; return whether it was sent."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto("\n".join(assignments).encode(), target)
        except OSError as exc:
            if not self._failed:  # once: systemd may be gone for good
                log.warning("sd_notify_failed", socket=self.address, error=exc.strerror)
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up (or a reload) is complete."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC``: a reload begins (``READY=1`` ends it)."""
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={_monotonic_usec()}")

    def stopping(self) -> bool:
        """``STOPPING=1``: shutdown begins."""
        return self.notify("STOPPING=1", "STATUS=stopping")

    def status(self, text: str) -> bool:
        """``STATUS=``: one line that ``systemctl status`` shows."""
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the event loop is alive."""
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Close the sending socket."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def watchdog_interval(
    environ: MutableMapping[str, str] | None = None, *, pid: int | None = None
) -> float | None:
    """Seconds between ``WATCHDOG=1`` messages: half of ``$WATCHDOG_USEC``, or ``None``.

    ``WATCHDOG_PID``, when set, must be our pid (sd_watchdog_enabled(3)).
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    me = os.getpid() if pid is None else pid
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != me):
        return None
    return int(usec) / 2e6
