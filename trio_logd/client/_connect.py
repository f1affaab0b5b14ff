"""Finding the ingest socket, connecting to it, and checking who serves it.

How this works: the socket path comes from the caller or, as every command
finds it, from the config (``--config``/``$TRIO_LOGD_CONFIG``,
``/etc/trio-logd/logd.toml``, embedded defaults), read by ``trio_logd.locate``
without loading the config schema. The connect is
non-blocking: on a Unix socket it succeeds or fails at once (``EAGAIN`` when
the daemon's backlog is full, e.g. while it is stopped), so neither a thread
nor an event loop ever waits in it.

Before a byte is written, the server end is checked with ``SO_PEERCRED``:
the uid that called ``listen()`` must be the expected daemon uid, or root.
By default that is the owner of the socket's directory: whoever owns the
directory can replace the socket anyway, and nobody else can put one there
(for a world-writable directory such as ``/tmp`` the owner is root, so a
daemon of another uid there needs ``expected_uid``). Root is always
accepted: it can read the client's memory and the log files regardless;
so is the client's own uid (no privilege boundary to cross).
"""

from __future__ import annotations

import errno
import os
import socket

from trio_logd.errors import ConnectFailed
from trio_logd.locate import CONFIG_ENV_VAR, SYSTEM_CONFIG_PATH, configured_path, find_config_path
from trio_logd.peer import PeerCred, read_peer_cred

__all__ = [
    "NoSocket",
    "PeerRefused",
    "check_server",
    "connect",
    "default_socket_path",
    "socket_origin",
    "trusted_uid",
]


class PeerRefused(ConnectFailed):
    """The socket answers, but is served by a uid the client does not trust.

    Unlike a plain :class:`~trio_logd.errors.ConnectFailed` (the daemon is
    down or busy, a normal event during restarts) this may be someone
    squatting the socket path, and is worth telling a human about.
    """


class NoSocket(ConnectFailed):
    """Nothing exists at the socket path: no daemon runs there, or the path is wrong.

    Unlike a refused connection (a daemon restarting) this one is worth
    telling a human at once, with where the path came from.
    """


def socket_origin(config: str | None = None, key: str = "socket") -> str:
    """Where the default socket path comes from, for messages: the config file, or why none.

    Args:
        config: the ``--config`` argument, if any.
        key: the ``[daemon]`` key the path comes from (``socket``, ``control_socket``).
    """
    path = find_config_path(config)
    if path is None:
        return (
            f"the path is the embedded default, relative to the current directory {os.getcwd()}, "
            f"as no config file was found: no --config, ${CONFIG_ENV_VAR} unset, "
            f"no {SYSTEM_CONFIG_PATH}"
        )
    if config is None and os.environ.get(CONFIG_ENV_VAR):
        return f"the path is [daemon] {key} of ${CONFIG_ENV_VAR}={path}"
    return f"the path is [daemon] {key} of {path}"


def default_socket_path(config: str | None = None) -> str:
    """The ingest socket as every command finds it (SPEC §5), made absolute.

    Args:
        config: a config file to read instead of the discovered one.

    Only ``[daemon] socket`` is read (``trio_logd.locate``): the daemon's
    config schema is not loaded.

    Raises:
        ConfigError: the config named by *config* or ``$TRIO_LOGD_CONFIG``
            is missing or not TOML, or its ``socket`` is not a path.
    """
    return configured_path(config, "socket")


def trusted_uid(path: str, expected_uid: int | None) -> tuple[int | None, str]:
    """The uid a daemon serving *path* must have (besides root), and how to name it.

    Returns:
        ``(uid, description)``; ``uid`` is ``None`` when the socket's
        directory cannot be examined (then only root is trusted).
    """
    if expected_uid is not None:
        return expected_uid, f"uid {expected_uid}"
    directory = os.path.dirname(path) or "."
    try:
        owner = os.stat(directory).st_uid
    except OSError:
        return None, f"the owner of {directory} (unknown)"
    return owner, f"uid {owner} (the owner of {directory})"


def connect(path: str, expected_uid: int | None = None) -> socket.socket:
    """Connect to the ingest socket at *path* and check who serves it.

    Args:
        path: the socket.
        expected_uid: the daemon's uid (see :func:`trusted_uid`).

    Returns:
        A connected, non-blocking socket.

    Raises:
        PeerRefused: the server's uid is neither the expected one nor root.
        NoSocket: nothing exists at *path*.
        ConnectFailed: nothing (or nothing ready) serves *path*.
    """
    sock = socket.socket(
        socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
    )
    try:
        sock.connect(path)
        cred = read_peer_cred(sock)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENOENT:
            msg = f"{path}: no such socket"
            raise NoSocket(msg) from exc
        if exc.errno == errno.EAGAIN:
            reason = "the daemon's backlog is full (stopped or overloaded)"
        else:
            reason = exc.strerror or str(exc)
        msg = f"{path}: cannot connect: {reason}"
        raise ConnectFailed(msg) from exc
    try:
        check_server(path, cred, expected_uid, "not sending records there")
    except PeerRefused:
        sock.close()
        raise
    return sock


def check_server(path: str, cred: PeerCred, expected_uid: int | None, refusal: str) -> None:
    """Refuse a server of *path* that is neither root, nor the trusted uid
    (:func:`trusted_uid`), nor our own uid (no stranger: no boundary to cross).

    Raises:
        PeerRefused: naming the server's uid and pid, what was expected, and *refusal*.
    """
    uid, who = trusted_uid(path, expected_uid)
    if cred.uid not in (0, uid, os.geteuid()):
        msg = (
            f"{path}: served by uid {cred.uid} (pid {cred.pid}), expected {who} or root: {refusal}"
        )
        raise PeerRefused(msg)
