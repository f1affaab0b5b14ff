"""One connection to a collector: TCP or TLS, and how much of what we sent it has.

How this works: :func:`open_link` connects (``trio.open_tcp_stream``: name
resolution off the event loop, IPv4 and IPv6), sets keepalive and
``TCP_USER_TIMEOUT`` so that a collector that vanished without a word (a
network partition, a powered-off host) is noticed within ``timeout``, and,
for ``protocol = "tls"``, wraps the stream in TLS (RFC 5425; certificate
and host name verified unless ``verify = false``) and completes the
handshake, all within ``timeout``.

TCP says nothing to the application about delivery, but the kernel knows
how many bytes the peer acknowledged: ``tcpi_bytes_acked`` of ``TCP_INFO``
(Linux ≥ 4.1, RFC 4898's ``tcpEStatsAppHCThruOctetsAcked``; it counts the
SYN too, which is harmless as both ends of a comparison do). After a write,
:meth:`Link.written` is "acknowledged + still queued" (``SIOCOUTQ``), both
read from one instant: an acknowledgement landing between the two reads
would count its bytes twice, a total that no later acknowledgement reaches
(the last batch would never commit), so the pair is read again until the
acknowledged count did not move around the queue read. Once
:meth:`Link.acknowledged` reaches it, the collector's TCP stack has every
byte written so far. For TLS both count TLS record bytes, which is what the
socket carries.
"""

from __future__ import annotations

import errno
import fcntl
import socket
import ssl
import struct
import termios
from dataclasses import dataclass
from typing import Final

import trio

from trio_logd.config import ForwardConfig

__all__ = ["Link", "LinkError", "make_ssl_context", "open_link"]

#: ``struct tcp_info`` (linux/tcp.h): ``__u64 tcpi_bytes_acked`` after 13
#: single bytes/u32 groups and two u64 pacing rates.
_BYTES_ACKED_OFFSET: Final = 120
_TCP_INFO_LEN: Final = 128
#: Keepalive probes before the connection counts as dead.
_KEEPALIVE_PROBES: Final = 3


#: OpenSSL reasons that have a usual cause worth naming.
_TLS_HINTS: Final = {
    "WRONG_VERSION_NUMBER": " (does the collector speak TLS on this port?)",
    "UNEXPECTED_EOF_WHILE_READING": " (the collector closed the connection)",
    "TLSV1_ALERT_UNKNOWN_CA": " (the collector does not trust our certificate's CA)",
    "SSLV3_ALERT_BAD_CERTIFICATE": " (the collector refused our certificate)",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": " (the collector wants a client certificate: cert_file)",
}


class LinkError(Exception):
    """Connecting, the TLS handshake or a certificate failed; the message says which."""


def make_ssl_context(config: ForwardConfig) -> ssl.SSLContext:
    """The TLS client context of one destination (RFC 5425; TLS 1.2 or later).

    Raises:
        LinkError: a CA, certificate or key file cannot be read or used.
    """
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not config.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if config.cert_file is not None:
            ctx.load_cert_chain(config.cert_file, config.key_file)
    except (OSError, ssl.SSLError, ValueError) as exc:
        files = {"ca_file": config.ca_file, "cert_file": config.cert_file}
        named = ", ".join(f"{k} {v}" for k, v in files.items() if v)
        msg = f"cannot load TLS files ({named or 'system CAs'}): {describe_error(exc)}"
        raise LinkError(msg) from exc
    return ctx


def _root_cause(exc: BaseException) -> BaseException:
    """The error under trio's wrappers: BrokenResourceError's cause, a failed
    ``open_tcp_stream``'s first attempt (one per address, in an exception group)."""
    while True:
        cause = exc.__cause__
        wrapper = isinstance(exc, trio.BrokenResourceError) or (
            isinstance(exc, OSError) and exc.errno is None
        )
        if wrapper and cause is not None:
            exc = cause
        elif isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        else:
            return exc


def describe_error(exc: BaseException) -> str:
    """What went wrong with a link, in one line: the OS or TLS library's words."""
    exc = _root_cause(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or "").upper()
        hint = _TLS_HINTS.get(reason, "")
        words = reason.replace("_", " ").lower() or str(exc)
        return f"TLS error: {words}{hint}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


@dataclass(eq=False)
class Link:
    """An open connection to a collector.

    Attributes:
        stream: what records are written to (TLS or plain).
        sock: the TCP socket under it (for the kernel's counters).
    """

    stream: trio.abc.Stream
    sock: trio.socket.SocketType

    def acknowledged(self) -> int:
        """Bytes (+1 for the SYN) the peer's TCP has acknowledged so far."""
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        if len(info) < _BYTES_ACKED_OFFSET + 8:  # a kernel older than 4.1
            return 0
        acked: int = struct.unpack_from("=Q", info, _BYTES_ACKED_OFFSET)[0]
        return acked

    def queued(self) -> int:
        """Bytes in the send queue: not sent yet, or sent and not acknowledged."""
        out = fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
        return int(struct.unpack("i", out)[0])

    def written(self) -> int:
        """Bytes (+1) handed to the kernel so far: acknowledged + still queued, at one instant.

        Only an acknowledgement moves bytes from one count to the other (our
        writes happen in this task), so a pair read while the acknowledged
        count stood still is exact.
        """
        acked = self.acknowledged()
        while True:
            queued = self.queued()
            again = self.acknowledged()
            if again == acked:
                return acked + queued
            acked = again

    async def aclose(self) -> None:
        """Close (TLS: with close_notify), within a second."""
        with trio.move_on_after(1):
            await self.stream.aclose()
        await trio.aclose_forcefully(self.stream)


def _tune(sock: trio.socket.SocketType, timeout: float) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle = max(1, int(timeout))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // _KEEPALIVE_PROBES))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, _KEEPALIVE_PROBES)
    # sent data not acknowledged for this long breaks the connection (tcp(7))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(timeout * 1000))


async def open_link(config: ForwardConfig, ssl_context: ssl.SSLContext | None) -> Link:
    """Connect to *config*'s collector (and do the TLS handshake), within ``timeout``.

    Raises:
        LinkError: refused, unreachable, timed out, or TLS failed (the
            message says which, e.g. "certificate verify failed: …").
    """
    where = f"{config.address} ({config.protocol})"
    tcp: trio.SocketStream | None = None
    try:
        with trio.fail_after(config.timeout):
            tcp = await trio.open_tcp_stream(config.host, config.port)
            _tune(tcp.socket, config.timeout)
            if ssl_context is None:
                return Link(tcp, tcp.socket)
            tls = trio.SSLStream(
                tcp, ssl_context, server_hostname=config.server_name or config.host
            )
            await tls.do_handshake()
            return Link(tls, tcp.socket)
    except trio.TooSlowError:
        if tcp is not None:
            await trio.aclose_forcefully(tcp)
        if tcp is None:
            msg = f"{where}: connect timed out after {config.timeout:g}s"
        else:  # a plain TCP collector takes the TLS hello for a message and waits
            msg = (
                f"{where}: TLS handshake timed out after {config.timeout:g}s "
                "(does the collector speak TLS on this port?)"
            )
        raise LinkError(msg) from None
    except (OSError, trio.BrokenResourceError) as exc:
        if tcp is not None:
            await trio.aclose_forcefully(tcp)
        stage = "TLS handshake failed" if tcp is not None else "cannot connect"
        root = _root_cause(exc)
        if isinstance(root, OSError) and root.errno == errno.ECONNREFUSED:
            msg = f"{where}: connection refused"
        else:
            msg = f"{where}: {stage}: {describe_error(exc)}"
        raise LinkError(msg) from exc
    except BaseException:  # cancelled (shutdown): no socket left behind
        if tcp is not None:
            await trio.aclose_forcefully(tcp)
        raise
