"""The TOML config of trio-logd: frozen dataclasses, validated once at load.

How this works: ``load``/``loads`` parse TOML with ``tomllib`` and lay the
file's tables over the embedded defaults (``trio_logd/default.toml``, the same
schema), so a file may leave out any key. First ``_check_names`` walks the
whole file against ``_SCHEMA`` (derived from the dataclasses' fields) and
reports the first unknown table or key, with the closest known spelling
(``difflib``) or the table where that key does live: a typo is reported
before the errors it would cause. Then every table is read through a
``_Table``: each ``get`` names one key and the parser for its value. A parser
raises ``_Invalid(reason)``; the table turns it into
``ConfigError(file, "[table] key", reason)``. Checks across keys run after a
table is read. Once ``load`` has returned, nothing about the config can fail:
the daemon gets absolute paths, seconds as ``float`` and bytes as ``int``.

Relative paths are resolved at load against ``base_dir``, the current working
directory unless given (``make run`` runs from the checkout root).

Limit resolution (``Config.limits_for``) is pure: user and group names are
looked up by the caller (``lookup_identity``, which the daemon caches).

Adding a table (say ``[[forward]]``): a frozen dataclass for it, its entry in
``_SCHEMA`` (for an array of tables, teach ``_check_names`` to check each
element against it), a ``_read_forward(table)`` in the style of
``_read_store``, a field on ``Config``, one line in ``_build``, its defaults
in ``default.toml`` and its documentation in ``conf/logd.toml`` and
``docs/config.md``. Arrays of tables replace the default array rather than
merging with it (see ``_merge``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import grp
import importlib.resources
import ipaddress
import json
import os
import pwd
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple, TypeGuard, TypeVar

from trio_logd._units import parse_duration, parse_size
from trio_logd.errors import ConfigError
from trio_logd.protocol.message import FACILITIES, SEVERITIES

__all__ = [
    "COMPRESS_CHOICES",
    "CONFIG_ENV_VAR",
    "DEFAULTS_NAME",
    "FORWARD_PROTOCOLS",
    "FORWARD_STARTS",
    "FSYNC_CHOICES",
    "LOG_LEVELS",
    "ON_QUOTA_CHOICES",
    "ON_RATE_CHOICES",
    "SUBORDINATE_IDS_CHOICES",
    "SYSTEM_CONFIG_PATH",
    "AccessConfig",
    "Compress",
    "Config",
    "DaemonConfig",
    "ForwardConfig",
    "FsyncPolicy",
    "Identity",
    "IdentityConfig",
    "Limits",
    "LimitsOverride",
    "LogLevel",
    "MetricsConfig",
    "OnQuota",
    "OnRate",
    "StoreConfig",
    "default_config",
    "find_config",
    "find_config_path",
    "load",
    "loads",
    "lookup_identity",
]

Compress = Literal["none", "gzip", "zstd"]
FsyncPolicy = Literal["never", "batch", "always"]
OnRate = Literal["drop", "block"]
OnQuota = Literal["rotate", "drop"]
LogLevel = Literal["debug", "info", "warning", "error"]
ForwardProtocol = Literal["tcp", "tls"]
ForwardStart = Literal["oldest", "now"]
SubordinateIds = Literal["owner", "separate"]

COMPRESS_CHOICES: Final[tuple[Compress, ...]] = ("none", "gzip", "zstd")
FSYNC_CHOICES: Final[tuple[FsyncPolicy, ...]] = ("never", "batch", "always")
ON_RATE_CHOICES: Final[tuple[OnRate, ...]] = ("drop", "block")
ON_QUOTA_CHOICES: Final[tuple[OnQuota, ...]] = ("rotate", "drop")
LOG_LEVELS: Final[tuple[LogLevel, ...]] = ("debug", "info", "warning", "error")
SUBORDINATE_IDS_CHOICES: Final[tuple[SubordinateIds, ...]] = ("owner", "separate")
#: Where the subordinate-id files are when ``[identity]`` leaves them ``""``
#: (tests point these at files of their own: never the host's).
SUBUID_ENV: Final = "TRIO_LOGD_SUBUID_FILE"
SUBGID_ENV: Final = "TRIO_LOGD_SUBGID_FILE"
FORWARD_PROTOCOLS: Final[tuple[ForwardProtocol, ...]] = ("tcp", "tls")
FORWARD_STARTS: Final[tuple[ForwardStart, ...]] = ("oldest", "now")

#: SPEC §5 discovery: ``--config FILE``, else this variable, else
#: ``SYSTEM_CONFIG_PATH`` if it exists, else the embedded defaults.
CONFIG_ENV_VAR: Final = "TRIO_LOGD_CONFIG"
SYSTEM_CONFIG_PATH: Final = "/etc/trio-logd/logd.toml"

#: The ``file`` of errors found in the embedded defaults (a bug, caught by tests).
DEFAULTS_NAME: Final = "<embedded defaults>"

#: RFC 5424 §6.1: a receiver MUST accept messages of 480 octets.
MIN_MESSAGE_BYTES: Final = 480
#: Memory per connection is bounded by max_message_bytes (SPEC §2); 16 MiB
#: times a few thousand connections is already more than a host should spend.
MAX_MESSAGE_BYTES: Final = 16 << 20
#: ``struct sockaddr_un.sun_path`` is 108 bytes on Linux (unix(7)), one of
#: them the terminating NUL that Python and most C clients write.
MAX_SOCKET_PATH_BYTES: Final = 107
#: Largest count or size: fits an ``off_t`` and a signed 64-bit counter.
MAX_INT: Final = (1 << 63) - 1
#: Longest duration (100 years): keeps ``now + duration`` far from overflow.
MAX_SECONDS: Final = 100 * 365 * 86400
#: uid_t is 32 bits and (uid_t)-1 means "no uid" (setresuid(2)).
MAX_UID: Final = (1 << 32) - 2
#: Default headroom divisor: 2 % of max_connections reserved for root and admins.
HEADROOM_DIVISOR: Final = 50

_T = TypeVar("_T")
_Parser = Callable[[object], _T]

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_UID_NAME: Final = re.compile(r"0|[1-9][0-9]{0,9}")
_OCTAL_MODE: Final = re.compile(r"(?:0o?)?([0-7]{1,4})")
#: User and group names: systemd's "relaxed" rule (no control characters, no
#: ``:`` or ``/``, no leading or trailing space, not all digits, not ``.`` or
#: ``..``), so that names from LDAP/sssd (``john@example.com``, ``domain
#: users``) are accepted.
_NAME: Final = re.compile(r"(?!\d+\Z)(?!\.\.?\Z)(?! )(?!.* \Z)[^:/\x00-\x1f\x7f]{1,256}")
_CLAIM: Final = re.compile(r"(user|group|uid):(.*)", re.DOTALL)
_FORWARD_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: ``host:port``, ``[v6]:port``; the host part is checked loosely (a name or an
#: IPv4 address: the resolver has the last word).
_ADDRESS: Final = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>[0-9]{1,5})"
)
#: RFC 5424 §6: PRINTUSASCII = %d33-126
_PRINTUSASCII: Final = re.compile(r"[\x21-\x7e]+")
_TOML_ERROR: Final = re.compile(r"(.*) \((?:at line (\d+), column (\d+)|at end of document)\)")


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """``[daemon]``: sockets, the store's directory and global caps.

    Attributes:
        socket: absolute path of the ingest ``SOCK_STREAM`` socket.
        control_socket: absolute path of the control socket (queries, stats,
            reload; also the pid-file replacement).
        datagram_socket: absolute path of the optional ``SOCK_DGRAM`` socket,
            or ``None`` when off (``""`` in the file).
        log_dir: absolute path of the store's root directory.
        max_message_bytes: longest frame stored whole; longer ones are
            truncated (SPEC §2). Between 480 and 16 MiB.
        max_connections: global cap on concurrent ingest connections.
        connection_headroom: connections, of ``max_connections``, that only
            root and ``[access] admins`` may use; always ``< max_connections``.
        socket_mode: permission bits of the three sockets.
        idle_timeout: seconds a connection may send nothing before it is
            closed; ``0`` = never.
        frame_timeout: seconds a started frame may take to end (against
            slowloris senders); ``0`` = never.
        shutdown_timeout: seconds to drain connections on SIGTERM.
        log_level: level of the daemon's own diagnostic log.
    """

    socket: str
    control_socket: str
    datagram_socket: str | None
    log_dir: str
    max_message_bytes: int
    max_connections: int
    connection_headroom: int
    socket_mode: int
    idle_timeout: float
    frame_timeout: float
    shutdown_timeout: float
    log_level: LogLevel


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """``[store]``: rotation, compression, retention and durability.

    Attributes:
        max_file_bytes: rotate a uid's current file when it reaches this size.
        max_file_age: rotate a current file this many seconds after its first
            record; ``0`` = by size only.
        compress: how rotated files are compressed.
        max_age: delete rotated files whose newest record is older than this
            many seconds; ``0`` = keep regardless of age.
        max_bytes: all uids' files together never exceed this.
        keep_free_bytes: leave at least this much free on the file system of
            ``log_dir``; ``0`` = no reserve.
        fsync: when records are synced to disk.
    """

    max_file_bytes: int
    max_file_age: float
    compress: Compress
    max_age: float
    max_bytes: int
    keep_free_bytes: int
    fsync: FsyncPolicy


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one uid (SPEC §6), fully resolved.

    Attributes:
        rate_messages: records per second refilled into the records bucket.
        burst_messages: size of the records bucket (``>= 1``).
        rate_bytes: payload bytes per second refilled into the bytes bucket.
        burst_bytes: size of the bytes bucket (``>= max_message_bytes``).
        max_connections: concurrent ingest connections of the uid.
        quota_bytes: disk space the uid's files may use.
        on_rate: ``"drop"`` (count and report) or ``"block"`` (backpressure).
        on_quota: ``"rotate"`` (delete the uid's oldest files) or ``"drop"``.
    """

    rate_messages: int
    burst_messages: int
    rate_bytes: int
    burst_bytes: int
    max_connections: int
    quota_bytes: int
    on_rate: OnRate
    on_quota: OnQuota


@dataclass(frozen=True, slots=True)
class LimitsOverride:
    """One ``[limits.uid.N]``, ``[limits.user.NAME]`` or ``[limits.group.NAME]`` table.

    Each attribute is the value the table sets, or ``None`` when it leaves the
    key to the next layer (see ``Config.limits_for``).
    """

    rate_messages: int | None = None
    burst_messages: int | None = None
    rate_bytes: int | None = None
    burst_bytes: int | None = None
    max_connections: int | None = None
    quota_bytes: int | None = None
    on_rate: OnRate | None = None
    on_quota: OnQuota | None = None


_LIMIT_KEYS: Final = tuple(f.name for f in dataclasses.fields(Limits))
#: Keys where, among several matching group tables, the largest value wins.
_GENEROUS_KEYS: Final = frozenset(
    ("rate_messages", "burst_messages", "rate_bytes", "burst_bytes", "max_connections",
     "quota_bytes")
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """``[access]``: who may read all records and who may reload.

    Root (uid 0) always may do both; see ``Config.is_reader`` and
    ``Config.is_admin``.

    Attributes:
        readers: group names whose members may read every uid's records.
        admins: group names whose members may reload and use the connection
            headroom.
    """

    readers: tuple[str, ...]
    admins: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """``[identity]``: relays that may submit records on behalf of other uids; subordinate ids.

    Attributes:
        may_claim: entries ``"user:NAME"``, ``"uid:N"`` or ``"group:NAME"``,
            as written in the file.
        subordinate_ids: ``"owner"``: a uid delegated to a user in
            ``subuid_file`` (a gid in ``subgid_file``) is limited as that user,
            its records carry ``owner_uid`` and she may read them;
            ``"separate"``: such ids are users of their own.
        subuid_file: ``subuid(5)``; ``""`` in the file means the default,
            ``$TRIO_LOGD_SUBUID_FILE`` or else ``/etc/subuid``.
        subgid_file: ``subgid(5)``; likewise (``$TRIO_LOGD_SUBGID_FILE``).
        claim_uids: the ``uid:N`` entries, parsed.
        claim_users: the ``user:NAME`` entries.
        claim_groups: the ``group:NAME`` entries.

    Raises:
        ValueError: when built directly with a malformed entry (``load``
            reports those as ``ConfigError`` first).
    """

    may_claim: tuple[str, ...]
    subordinate_ids: SubordinateIds = "owner"
    subuid_file: str = "/etc/subuid"
    subgid_file: str = "/etc/subgid"
    claim_uids: frozenset[int] = field(init=False, repr=False, compare=False)
    claim_users: frozenset[str] = field(init=False, repr=False, compare=False)
    claim_groups: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parsed: dict[str, set[str]] = {"uid": set(), "user": set(), "group": set()}
        for entry in self.may_claim:
            kind, name = _parse_claim(entry)
            parsed[kind].add(name)
        object.__setattr__(self, "claim_uids", frozenset(int(u) for u in parsed["uid"]))
        object.__setattr__(self, "claim_users", frozenset(parsed["user"]))
        object.__setattr__(self, "claim_groups", frozenset(parsed["group"]))


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """``[control]``: caps on the control socket's connections and queries.

    The control socket answers every local user (a uid may read its own
    records), so it is limited like the ingest socket: per uid and globally,
    with room that only root and ``[access] admins`` may use, and each query's
    memory and time are bounded (docs/security.md).

    Attributes:
        max_connections: concurrent control connections, all uids together.
        max_connections_per_uid: concurrent control connections of one uid
            (root and admins are not held to it).
        connection_headroom: connections, of ``max_connections``, that only
            root and ``[access] admins`` may use; always ``< max_connections``.
        request_timeout: seconds a control client has to send its whole
            request line.
        first_byte_timeout: seconds a new control connection may stay
            silent before it is closed.
        max_queries_per_uid: concurrent queries and follows of one uid
            (root and admins are not held to it).
        query_buffer_bytes: bytes of answer one query may hold while its
            client does not read; beyond it the query pauses.
        query_memory_bytes: bytes of answers all queries and follows
            together may hold.
        query_step: seconds of work one query step may take before the
            event loop and the other queries are served.
        regex_memory_bytes: memory budget of one ``--grep`` pattern (RE2's
            ``max_mem``).
    """

    max_connections: int
    max_connections_per_uid: int
    connection_headroom: int
    request_timeout: float
    first_byte_timeout: float
    max_queries_per_uid: int
    query_buffer_bytes: int
    query_memory_bytes: int
    query_step: float
    regex_memory_bytes: int


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``[metrics]``: where the Prometheus metrics go besides ``trio-logd metrics``.

    Both are off by default. Changing them takes effect at the next start
    (like the socket paths), not on reload.

    Attributes:
        listen: ``(host, port)`` to serve ``GET /metrics`` on, or ``None``
            when off (``""`` in the file). The host is an IP address
            (``localhost`` means ``127.0.0.1``); port 0 picks a free one.
        textfile: absolute path of a ``.prom`` file for node_exporter's
            textfile collector, rewritten atomically every ``interval``, or
            ``None`` when off.
        interval: seconds between two writes of ``textfile``, at least 1.
    """

    listen: tuple[str, int] | None
    textfile: str | None
    interval: float


#: ``[metrics]`` when the file has none (the same values as ``default.toml``).
DEFAULT_METRICS: Final = MetricsConfig(listen=None, textfile=None, interval=15.0)

#: ``[control]`` for a ``Config`` built by hand (the same values as ``default.toml``).
DEFAULT_CONTROL: Final = ControlConfig(
    max_connections=256,
    max_connections_per_uid=16,
    connection_headroom=32,
    request_timeout=10.0,
    first_byte_timeout=2.0,
    max_queries_per_uid=4,
    query_buffer_bytes=1 << 20,
    query_memory_bytes=32 << 20,
    query_step=0.02,
    regex_memory_bytes=8 << 20,
)


@dataclass(frozen=True, slots=True)
class ForwardConfig:
    """One ``[[forward]]`` table: a central collector records are forwarded to.

    See ``docs/forwarding.md``. Every key but ``name`` and ``address`` has a
    default (:data:`FORWARD_DEFAULTS`).

    Attributes:
        name: identifies the destination (its cursor file, stats, logs);
            unique, ``[A-Za-z0-9][A-Za-z0-9_.-]*``, at most 64 characters.
        address: ``"HOST:PORT"`` as written (``"[::1]:6514"`` for IPv6).
        protocol: ``"tcp"`` (RFC 6587 octet counting) or ``"tls"`` (RFC 5425).
        ca_file: CA certificates (PEM) that verify the collector, or ``None``
            for the system's.
        cert_file: client certificate chain (PEM), or ``None`` for none.
        key_file: the client certificate's key, or ``None`` when it is in
            ``cert_file``.
        server_name: the name the collector's certificate must carry, or
            ``None`` for the host of ``address``.
        verify: verify the collector's certificate (``false`` only for tests).
        uids: forward only these uids; empty = every uid.
        min_severity: forward this severity and the more severe ones.
        facilities: forward only these facilities; empty = every facility.
        hostname: the RFC 5424 HOSTNAME sent, or ``None`` for this machine's name.
        start: where a destination without a cursor begins: ``"oldest"``
            (every stored record) or ``"now"`` (records stored from now on).
        commit_delay: seconds a record must have been acknowledged by the
            collector's TCP before the cursor moves past it.
        timeout: seconds for connecting and the TLS handshake, and for sent
            data to be acknowledged before the connection counts as dead.
        retry_max: longest wait between two connection attempts, in seconds.
        host: the host part of ``address`` (brackets removed).
        port: the port of ``address``.
    """

    name: str
    address: str
    protocol: ForwardProtocol = "tcp"
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    verify: bool = True
    uids: tuple[int, ...] = ()
    min_severity: str = "debug"
    facilities: tuple[str, ...] = ()
    hostname: str | None = None
    start: ForwardStart = "oldest"
    commit_delay: float = 2.0
    timeout: float = 30.0
    retry_max: float = 60.0
    host: str = field(init=False, repr=False, compare=False)
    port: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        host, port = _split_address(self.address)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)


#: The keys of a ``[[forward]]`` table that may be left out, with their
#: values as a file would write them (an array of tables cannot take its
#: defaults from ``default.toml``: it replaces the default array whole).
FORWARD_DEFAULTS: Final[Mapping[str, object]] = MappingProxyType(
    {
        "protocol": "tcp",
        "ca_file": "",
        "cert_file": "",
        "key_file": "",
        "server_name": "",
        "verify": True,
        "uids": [],
        "min_severity": "debug",
        "facilities": [],
        "hostname": "",
        "start": "oldest",
        "commit_delay": "2s",
        "timeout": "30s",
        "retry_max": "60s",
    }
)
#: Keys that mean something only with ``protocol = "tls"``.
_TLS_KEYS: Final = ("ca_file", "cert_file", "key_file", "server_name", "verify")


@dataclass(frozen=True, slots=True)
class Config:
    """A whole, validated trio-logd config.

    Attributes:
        path: absolute path of the file it was loaded from (the daemon
            re-reads it on reload), or ``None`` for the embedded defaults and
            ``loads``.
        daemon: ``[daemon]``.
        store: ``[store]``.
        limits_default: ``[limits.default]``, complete.
        limits_uid: ``[limits.uid.N]`` tables by uid.
        limits_user: ``[limits.user.NAME]`` tables by user name.
        limits_group: ``[limits.group.NAME]`` tables by group name, in file
            order (which decides policies between several groups).
        access: ``[access]``.
        identity: ``[identity]``.
        metrics: ``[metrics]``.
        forward: the ``[[forward]]`` destinations, in file order.
        control: ``[control]``.
    """

    path: str | None
    daemon: DaemonConfig
    store: StoreConfig
    limits_default: Limits
    limits_uid: Mapping[int, LimitsOverride]
    limits_user: Mapping[str, LimitsOverride]
    limits_group: Mapping[str, LimitsOverride]
    access: AccessConfig
    identity: IdentityConfig
    metrics: MetricsConfig = DEFAULT_METRICS
    forward: tuple[ForwardConfig, ...] = ()
    control: ControlConfig = DEFAULT_CONTROL

    def limits_for(self, uid: int, *, user: str | None, groups: Iterable[str]) -> Limits:
        """Resolve the limits of *uid*, key by key.

        Each key comes from the first layer that sets it: ``[limits.uid.N]``,
        then ``[limits.user.NAME]``, then the ``[limits.group.NAME]`` tables of
        the uid's groups, then ``[limits.default]``. Among several matching
        group tables, a numeric key takes the largest value any of them sets
        (the most generous) and ``on_rate``/``on_quota`` the value of the
        first of them in file order.

        Args:
            uid: the kernel-reported uid.
            user: its user name, or ``None`` if it has none.
            groups: names of its groups (primary and supplementary).

        Returns:
            The resolved limits; ``limits_default`` itself when nothing
            overrides it.
        """
        by_uid = self.limits_uid.get(uid)
        by_user = self.limits_user.get(user) if user is not None else None
        by_group: list[LimitsOverride] = []
        if self.limits_group:
            member = set(groups)
            by_group = [o for name, o in self.limits_group.items() if name in member]
        if by_uid is None and by_user is None and not by_group:
            return self.limits_default
        # Any: the values are the fields' own types, which mypy cannot follow through getattr.
        changes: dict[str, Any] = {}
        for key in _LIMIT_KEYS:
            for layer in (by_uid, by_user):
                if layer is not None and (value := getattr(layer, key)) is not None:
                    changes[key] = value
                    break
            else:
                values = [v for o in by_group if (v := getattr(o, key)) is not None]
                if values:
                    changes[key] = max(values) if key in _GENEROUS_KEYS else values[0]
        return dataclasses.replace(self.limits_default, **changes)

    def may_claim_for(self, uid: int, *, user: str | None, groups: Iterable[str]) -> bool:
        """Tell whether *uid* may submit records on behalf of another uid.

        Root is not implicitly a relay: list ``"uid:0"`` to make it one.

        Args:
            uid: the kernel-reported uid of the sender.
            user: its user name, or ``None``.
            groups: names of its groups.

        Returns:
            ``True`` when an ``[identity] may_claim`` entry names the uid, the
            user or one of the groups.
        """
        identity = self.identity
        return (
            uid in identity.claim_uids
            or (user is not None and user in identity.claim_users)
            or not identity.claim_groups.isdisjoint(groups)
        )

    def is_admin(self, uid: int, groups: Iterable[str]) -> bool:
        """Tell whether *uid* may reload and use the connection headroom.

        Args:
            uid: the caller's kernel-reported uid.
            groups: names of its groups.

        Returns:
            ``True`` for root and for members of an ``[access] admins`` group.
        """
        return uid == 0 or not set(self.access.admins).isdisjoint(groups)

    def is_reader(self, uid: int, groups: Iterable[str]) -> bool:
        """Tell whether *uid* may read every uid's records.

        Every uid may read its own records; this is about everyone else's.
        Being an admin does not imply being a reader.

        Args:
            uid: the caller's kernel-reported uid.
            groups: names of its groups.

        Returns:
            ``True`` for root and for members of an ``[access] readers`` group.
        """
        return uid == 0 or not set(self.access.readers).isdisjoint(groups)


class Identity(NamedTuple):
    """A uid's names from the user and group databases (``lookup_identity``)."""

    user: str | None
    groups: tuple[str, ...]


#: The names a file may use: a tuple lists a table's keys, a dict its
#: sub-tables, ``"*"`` any name. Checked before values (``_check_names``).
_Schema = Mapping[str, "_Schema"] | tuple[str, ...]


def _keys(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


_SCHEMA: Final[_Schema] = {
    "daemon": _keys(DaemonConfig),
    "store": _keys(StoreConfig),
    "limits": {
        "default": _keys(Limits),
        "uid": {"*": _keys(Limits)},
        "user": {"*": _keys(Limits)},
        "group": {"*": _keys(Limits)},
    },
    "access": _keys(AccessConfig),
    "identity": _keys(IdentityConfig),
    "metrics": _keys(MetricsConfig),
    "control": _keys(ControlConfig),
    "forward": _keys(ForwardConfig),  # an array of tables: each element has these keys
}

#: Tables with fixed names and their keys, to say where a misplaced key lives.
_KEY_HOMES: Final = (
    (("daemon",), _keys(DaemonConfig)),
    (("store",), _keys(StoreConfig)),
    (("limits", "default"), _keys(Limits)),
    (("access",), _keys(AccessConfig)),
    (("identity",), _keys(IdentityConfig)),
    (("metrics",), _keys(MetricsConfig)),
    (("control",), _keys(ControlConfig)),
    (("forward",), _keys(ForwardConfig)),
)


# --------------------------------------------------------------------------- public functions


def load(path: str | os.PathLike[str], *, base_dir: str | None = None) -> Config:
    """Read and validate the config file at *path*.

    Args:
        path: the file; errors name it as given.
        base_dir: directory that relative paths in the file (and *path*
            itself, for ``Config.path``) are resolved against; the current
            working directory when ``None``.

    Returns:
        The config, every key the file leaves out taken from the embedded
        defaults.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8 or not TOML, or a
            table or key is unknown or has a bad value.
    """
    file = os.fspath(path)
    try:
        with open(file, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        reason = f"cannot read: {exc.strerror or exc}"
        raise ConfigError(file, "", reason) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (bad byte at offset {exc.start})"
        raise ConfigError(file, "", reason) from exc
    base = _base_dir(base_dir)
    return _load_text(text, file=file, path=os.path.normpath(os.path.join(base, file)), base=base)


def loads(text: str, *, file: str = "<string>", base_dir: str | None = None) -> Config:
    """Validate a config given as TOML text.

    Args:
        text: the TOML document.
        file: the name errors give for it.
        base_dir: directory relative paths are resolved against; the current
            working directory when ``None``.

    Returns:
        The config (``path`` is ``None``), every key the text leaves out taken
        from the embedded defaults.

    Raises:
        ConfigError: the text is not TOML, or a table or key is unknown or has
            a bad value.
    """
    return _load_text(text, file=file, path=None, base=_base_dir(base_dir))


def default_config(*, base_dir: str | None = None) -> Config:
    """Return the embedded defaults (``trio_logd/default.toml``).

    Args:
        base_dir: directory relative paths are resolved against; the current
            working directory when ``None``.

    Returns:
        The config used when no file is found; ``path`` is ``None``.
    """
    ctx = _Ctx(file=DEFAULTS_NAME, base_dir=_base_dir(base_dir))
    return _build(_default_tables(), ctx, path=None)


def find_config_path(
    explicit: str | None,
    *,
    environ: Mapping[str, str] | None = None,
    system_path: str = SYSTEM_CONFIG_PATH,
) -> str | None:
    """Return the config file every command uses, per SPEC §5, without reading it.

    Args:
        explicit: the ``--config FILE`` argument, or ``None``.
        environ: the environment to read ``$TRIO_LOGD_CONFIG`` from
            (``os.environ`` when ``None``); an empty value counts as unset.
        system_path: the system-wide file, used if it exists (a dangling
            symlink counts as existing, so that it is reported, not skipped).

    Returns:
        The path to load, or ``None`` for the embedded defaults.
    """
    if explicit is not None:
        return explicit
    env = os.environ if environ is None else environ
    from_env = env.get(CONFIG_ENV_VAR, "")
    if from_env:
        return from_env
    if os.path.lexists(system_path):
        return system_path
    return None


def find_config(
    explicit: str | None,
    *,
    environ: Mapping[str, str] | None = None,
    system_path: str = SYSTEM_CONFIG_PATH,
    base_dir: str | None = None,
) -> Config:
    """Find and load the config as every command does (SPEC §5).

    ``--config FILE``, else ``$TRIO_LOGD_CONFIG``, else *system_path* if it
    exists, else the embedded defaults. A file named by the first two must
    exist: a typo there is an error, never a silent fallback.

    Args:
        explicit: the ``--config FILE`` argument, or ``None``.
        environ: the environment (``os.environ`` when ``None``).
        system_path: the system-wide file.
        base_dir: directory relative paths are resolved against; the current
            working directory when ``None``.

    Returns:
        The config.

    Raises:
        ConfigError: the chosen file is missing or invalid.
    """
    path = find_config_path(explicit, environ=environ, system_path=system_path)
    if path is None:
        return default_config(base_dir=base_dir)
    return load(path, base_dir=base_dir)


def lookup_identity(uid: int) -> Identity:
    """Look up *uid*'s user name and groups (primary and supplementary).

    This asks NSS (``/etc/passwd``, maybe LDAP), which may block: the daemon
    calls it off the event loop and caches the answer per uid.

    Args:
        uid: a kernel-reported uid.

    Returns:
        ``Identity(user, groups)``: ``(None, ())`` for a uid without a
        passwd entry; group ids without a name are left out.
    """
    try:
        entry = pwd.getpwuid(uid)
    except (KeyError, OverflowError):
        return Identity(None, ())
    try:
        gids = os.getgrouplist(entry.pw_name, entry.pw_gid)
    except OSError:
        gids = [entry.pw_gid]
    names: list[str] = []
    for gid in dict.fromkeys(gids):
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return Identity(entry.pw_name, tuple(names))


# --------------------------------------------------------------------------- reading tables


class _Invalid(Exception):
    """A parser refused a value; the message is the reason after ``[table] key: ``."""


@dataclass(frozen=True, slots=True)
class _Ctx:
    """What every table of one load shares."""

    file: str
    base_dir: str


class _Table:
    """One TOML table being read: parses values and names them in errors.

    *label* names an element of an array of tables (``[[forward]] #2``).
    """

    __slots__ = ("_ctx", "_label", "_path", "_raw")

    def __init__(
        self,
        ctx: _Ctx,
        path: tuple[str, ...],
        raw: Mapping[str, object],
        label: str | None = None,
    ) -> None:
        self._ctx = ctx
        self._path = path
        self._raw = raw
        self._label = label

    @property
    def ctx(self) -> _Ctx:
        return self._ctx

    @property
    def raw(self) -> Mapping[str, object]:
        """The table as parsed from TOML (merged over the defaults)."""
        return self._raw

    @property
    def name(self) -> str:
        """``[limits.uid.1000]``; empty for the top level."""
        if self._label is not None:
            return self._label
        return _table_name(self._path) if self._path else ""

    def where(self, key: str) -> str:
        """``[daemon] socket`` (or ``socket`` at the top level)."""
        return f"{self.name} {_toml_key(key)}" if self.name else _toml_key(key)

    def error(self, reason: str, key: str | None = None) -> ConfigError:
        """A ``ConfigError`` about *key* of this table, or the table itself."""
        return ConfigError(self._ctx.file, self.name if key is None else self.where(key), reason)

    def get(self, key: str, parse: _Parser[_T]) -> _T:
        """The parsed value of a key every merged table has (from the defaults)."""
        if key not in self._raw:
            reason = "missing"
            raise self.error(reason, key)
        return self._parse(key, parse)

    def get_optional(self, key: str, parse: _Parser[_T]) -> _T | None:
        """The parsed value of *key*, or ``None`` when the table leaves it out."""
        return self._parse(key, parse) if key in self._raw else None

    def _parse(self, key: str, parse: _Parser[_T]) -> _T:
        try:
            return parse(self._raw[key])
        except _Invalid as exc:
            raise self.error(str(exc), key) from None

    def table(self, key: str) -> _Table:
        """The sub-table *key* (empty when absent)."""
        value = self._raw.get(key, {})
        if not isinstance(value, dict):
            reason = f"expected a table, got {_show(value)}"
            raise self.error(reason, key)
        return _Table(self._ctx, (*self._path, key), value)

    def subtables(self, key: str) -> list[tuple[str, _Table]]:
        """The tables inside sub-table *key*, as ``(name, table)`` in file order."""
        parent = self.table(key)
        return [(name, parent.table(name)) for name in parent._raw]


def _check_names(
    raw: Mapping[str, object], schema: _Schema, path: tuple[str, ...], file: str
) -> None:
    """Fail on the first table or key of *raw* that *schema* does not know.

    Runs over the whole file before any value is parsed, so that a misspelt
    key is reported rather than the errors its absence causes. Types are left
    to the readers (``[daemon.socket]`` is "expected a path, got a table").
    """
    for key, value in raw.items():
        if isinstance(schema, tuple):  # a table of keys
            if key not in schema:
                raise _unknown(key, value, schema, path, file)
            continue
        sub = schema.get(key, schema.get("*"))  # a table of tables
        if sub is None:
            raise _unknown(key, value, [k for k in schema if k != "*"], path, file)
        if isinstance(value, dict):
            _check_names(value, sub, (*path, key), file)
        elif isinstance(value, list) and isinstance(sub, tuple):  # an array of tables
            for i, item in enumerate(value, 1):
                if not isinstance(item, dict):
                    continue
                try:
                    _check_names(item, sub, (*path, key), file)
                except ConfigError as exc:  # name the element: [[forward]] #2 nme
                    where = exc.key.replace(_table_name((*path, key)), _element_label(key, i), 1)
                    raise ConfigError(file, where, exc.reason) from None


def _unknown(
    key: str, value: object, known: Iterable[str], path: tuple[str, ...], file: str
) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    if isinstance(value, dict):
        hint = f" (did you mean {_table_name((*path, close[0]))}?)" if close else ""
        return ConfigError(file, _table_name((*path, key)), f"unknown table{hint}")
    hint = f" (did you mean {_toml_key(close[0])}?)" if close else _elsewhere(key, path)
    where = f"{_table_name(path)} {_toml_key(key)}" if path else _toml_key(key)
    return ConfigError(file, where, f"unknown key{hint}")


def _elsewhere(key: str, path: tuple[str, ...]) -> str:
    """`` (did you mean [limits.default] rate_messages?)`` when another table has *key*."""

    def shared(home: tuple[str, ...]) -> int:
        count = 0
        for mine, theirs in zip(home, path, strict=False):
            if mine != theirs:
                break
            count += 1
        return count

    homes = [home for home, keys in _KEY_HOMES if key in keys]
    if not homes:
        return ""
    # nearest first: [limits] max_connections is [limits.default]'s, not [daemon]'s
    home = max(homes, key=shared)
    return f" (did you mean {_table_name(home)} {_toml_key(key)}?)"


def _toml_key(key: str) -> str:
    """*key* as TOML would write it: bare when it can be, quoted otherwise."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _table_name(path: tuple[str, ...]) -> str:
    return "[" + ".".join(_toml_key(p) for p in path) + "]"


def _element_label(key: str, index: int) -> str:
    """``[[forward]] #2``: the *index*-th (from 1) table of the array *key*."""
    return f"[[{_toml_key(key)}]] #{index}"


def _show(value: object) -> str:
    """*value* as the file spelled it, short enough for one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:76] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"  # TOML dates and times


# --------------------------------------------------------------------------- value parsers


def _is_int(value: object) -> TypeGuard[int]:
    # TOML true/false arrive as bool, a subclass of int: never a number here.
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: object) -> int:
    if _is_int(value) and 0 < value <= MAX_INT:
        return value
    msg = f"expected a positive integer, got {_show(value)}"
    raise _Invalid(msg)


def _non_negative_int(value: object) -> int:
    if _is_int(value) and 0 <= value <= MAX_INT:
        return value
    msg = f"expected an integer >= 0, got {_show(value)}"
    raise _Invalid(msg)


def _size(*, minimum: int) -> _Parser[int]:
    what = "a positive number of bytes" if minimum > 0 else "a number of bytes >= 0"

    def parse(value: object) -> int:
        detail = ""
        if isinstance(value, str | int) and not isinstance(value, bool):
            try:
                size = parse_size(value)
            except ValueError as exc:
                if isinstance(value, str) and not str(exc).startswith("cannot read"):
                    detail = f": {exc}"
            else:
                if minimum <= size <= MAX_INT:
                    return size
        msg = f'expected {what} (an integer, or a string like "16MiB"), got {_show(value)}{detail}'
        raise _Invalid(msg)

    return parse


def _duration(value: object) -> float:
    detail = ""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            if isinstance(value, str) and not str(exc).startswith("cannot read"):
                detail = f": {exc}"
        else:
            if seconds <= MAX_SECONDS:
                return seconds
            detail = ": longer than 100 years"
    msg = (
        'expected a duration (seconds, or a string like "45s", "30m", "12h", "1d", "2w"), '
        f"got {_show(value)}{detail}"
    )
    raise _Invalid(msg)


def _choice(options: tuple[_T, ...]) -> _Parser[_T]:
    def parse(value: object) -> _T:
        for option in options:
            if value == option and isinstance(value, str):
                return option
        listed = ", ".join(json.dumps(o) for o in options)
        msg = f"expected one of {listed}, got {_show(value)}"
        raise _Invalid(msg)

    return parse


def _path(base_dir: str) -> _Parser[str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or not value or "\x00" in value:
            msg = f"expected a non-empty path, got {_show(value)}"
            raise _Invalid(msg)
        return os.path.normpath(os.path.join(base_dir, value))

    return parse


def _optional_path(base_dir: str) -> _Parser[str | None]:
    resolve = _path(base_dir)

    def parse(value: object) -> str | None:
        if value == "":
            return None
        if not isinstance(value, str):
            msg = f'expected a path, or "" for none, got {_show(value)}'
            raise _Invalid(msg)
        return resolve(value)

    return parse


def _mode(value: object) -> int:
    if _is_int(value) and 0 <= value <= 0o777:
        return value
    hint = ""
    if _is_int(value) and re.fullmatch(r"[0-7]{3,4}", str(value)):
        hint = f" (a decimal number; write 0o{value} for octal)"
    if isinstance(value, str) and (match := _OCTAL_MODE.fullmatch(value)):
        mode = int(match.group(1), 8)
        if mode <= 0o777:
            return mode
    msg = f'expected permission bits like 0o666 or "0666", got {_show(value)}{hint}'
    raise _Invalid(msg)


def _name(kind: str) -> _Parser[str]:
    def parse(value: object) -> str:
        if isinstance(value, str) and _NAME.fullmatch(value):
            return value
        msg = f"expected a {kind} name, got {_show(value)}"
        raise _Invalid(msg)

    return parse


def _group_names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        msg = f'expected an array of group names (like ["adm"]), got {_show(value)}'
        raise _Invalid(msg)
    return tuple(_name("group")(item) for item in value)


def _parse_claim(entry: str) -> tuple[str, str]:
    """Split ``"user:NAME"``, ``"uid:N"`` or ``"group:NAME"``; ``ValueError`` otherwise."""
    match = _CLAIM.fullmatch(entry)
    if match is not None:
        kind, name = match.groups()
        if kind == "uid":
            if _UID_NAME.fullmatch(name) and int(name) <= MAX_UID:
                return kind, name
        elif _NAME.fullmatch(name):
            return kind, name
    msg = f'expected "user:NAME", "uid:N" or "group:NAME", got {_show(entry)}'
    raise ValueError(msg)


def _claims(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        msg = f'expected an array like ["user:NAME", "uid:N", "group:NAME"], got {_show(value)}'
        raise _Invalid(msg)
    for entry in value:
        if not isinstance(entry, str):
            msg = f'expected "user:NAME", "uid:N" or "group:NAME", got {_show(entry)}'
            raise _Invalid(msg)
        try:
            _parse_claim(entry)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
    return tuple(value)


# --------------------------------------------------------------------------- tables


def _read_daemon(table: _Table) -> DaemonConfig:
    path, optional_path = _path(table.ctx.base_dir), _optional_path(table.ctx.base_dir)
    max_message_bytes = table.get("max_message_bytes", _size(minimum=1))
    if not MIN_MESSAGE_BYTES <= max_message_bytes <= MAX_MESSAGE_BYTES:
        reason = (
            f"expected between {MIN_MESSAGE_BYTES} (RFC 5424 §6.1) and {MAX_MESSAGE_BYTES} "
            f"(16 MiB), got {max_message_bytes}"
        )
        raise table.error(reason, "max_message_bytes")
    max_connections = table.get("max_connections", _positive_int)
    headroom = table.get_optional("connection_headroom", _non_negative_int)
    if headroom is None:
        headroom = min(max(1, max_connections // HEADROOM_DIVISOR), max_connections - 1)
    elif headroom >= max_connections:
        reason = f"expected less than max_connections ({max_connections}), got {headroom}"
        raise table.error(reason, "connection_headroom")
    config = DaemonConfig(
        socket=table.get("socket", path),
        control_socket=table.get("control_socket", path),
        datagram_socket=table.get("datagram_socket", optional_path),
        log_dir=table.get("log_dir", path),
        max_message_bytes=max_message_bytes,
        max_connections=max_connections,
        connection_headroom=headroom,
        socket_mode=table.get("socket_mode", _mode),
        idle_timeout=table.get("idle_timeout", _duration),
        frame_timeout=table.get("frame_timeout", _duration),
        shutdown_timeout=table.get("shutdown_timeout", _duration),
        log_level=table.get("log_level", _choice(LOG_LEVELS)),
    )
    seen: dict[str, str] = {}
    for key in ("socket", "control_socket", "datagram_socket"):
        value = getattr(config, key)
        if value is None:
            continue
        if len(os.fsencode(value)) > MAX_SOCKET_PATH_BYTES:
            reason = (
                f"{json.dumps(value)} is {len(os.fsencode(value))} bytes long; a Unix socket path "
                f"has at most {MAX_SOCKET_PATH_BYTES} (use a shorter directory)"
            )
            raise table.error(reason, key)
        if value in seen:
            reason = f"{json.dumps(value)} is the same path as {seen[value]}"
            raise table.error(reason, key)
        seen[value] = key
    return config


def _read_store(table: _Table) -> StoreConfig:
    return StoreConfig(
        max_file_bytes=table.get("max_file_bytes", _size(minimum=1)),
        max_file_age=table.get("max_file_age", _duration),
        compress=table.get("compress", _choice(COMPRESS_CHOICES)),
        max_age=table.get("max_age", _duration),
        max_bytes=table.get("max_bytes", _size(minimum=1)),
        keep_free_bytes=table.get("keep_free_bytes", _size(minimum=0)),
        fsync=table.get("fsync", _choice(FSYNC_CHOICES)),
    )


def _check_burst_bytes(table: _Table, burst_bytes: int | None, max_message_bytes: int) -> None:
    # A record costs its size in bytes tokens; with a smaller bucket a record
    # of max_message_bytes could never pass.
    if burst_bytes is not None and burst_bytes < max_message_bytes:
        reason = (
            f"expected at least [daemon] max_message_bytes ({max_message_bytes}), "
            f"so that the longest record can pass, got {burst_bytes}"
        )
        raise table.error(reason, "burst_bytes")


def _read_limits(table: _Table, max_message_bytes: int) -> Limits:
    limits = Limits(
        rate_messages=table.get("rate_messages", _positive_int),
        burst_messages=table.get("burst_messages", _positive_int),
        rate_bytes=table.get("rate_bytes", _size(minimum=1)),
        burst_bytes=table.get("burst_bytes", _size(minimum=1)),
        max_connections=table.get("max_connections", _positive_int),
        quota_bytes=table.get("quota_bytes", _size(minimum=1)),
        on_rate=table.get("on_rate", _choice(ON_RATE_CHOICES)),
        on_quota=table.get("on_quota", _choice(ON_QUOTA_CHOICES)),
    )
    _check_burst_bytes(table, limits.burst_bytes, max_message_bytes)
    return limits


def _read_override(table: _Table, max_message_bytes: int) -> LimitsOverride:
    override = LimitsOverride(
        rate_messages=table.get_optional("rate_messages", _positive_int),
        burst_messages=table.get_optional("burst_messages", _positive_int),
        rate_bytes=table.get_optional("rate_bytes", _size(minimum=1)),
        burst_bytes=table.get_optional("burst_bytes", _size(minimum=1)),
        max_connections=table.get_optional("max_connections", _positive_int),
        quota_bytes=table.get_optional("quota_bytes", _size(minimum=1)),
        on_rate=table.get_optional("on_rate", _choice(ON_RATE_CHOICES)),
        on_quota=table.get_optional("on_quota", _choice(ON_QUOTA_CHOICES)),
    )
    _check_burst_bytes(table, override.burst_bytes, max_message_bytes)
    return override


def _read_uid_overrides(limits: _Table, max_message_bytes: int) -> dict[int, LimitsOverride]:
    result: dict[int, LimitsOverride] = {}
    for name, table in limits.subtables("uid"):
        if not _UID_NAME.fullmatch(name) or int(name) > MAX_UID:
            hint = (
                "" if name.isdigit() else f" (for a user name use [limits.user.{_toml_key(name)}])"
            )
            reason = f"expected a uid (0 to {MAX_UID}, no leading zeros) as the table name{hint}"
            raise table.error(reason, None)
        result[int(name)] = _read_override(table, max_message_bytes)
    return result


def _read_named_overrides(
    limits: _Table, kind: str, max_message_bytes: int
) -> dict[str, LimitsOverride]:
    result: dict[str, LimitsOverride] = {}
    for name, table in limits.subtables(kind):
        if not _NAME.fullmatch(name):
            hint = f" (for a uid use [limits.uid.{name}])" if name.isdigit() else ""
            reason = f"expected a {kind} name as the table name{hint}"
            raise table.error(reason, None)
        result[name] = _read_override(table, max_message_bytes)
    return result


def _read_access(table: _Table) -> AccessConfig:
    return AccessConfig(
        readers=table.get("readers", _group_names),
        admins=table.get("admins", _group_names),
    )


def _listen_address(value: object) -> tuple[str, int] | None:
    if value == "":
        return None
    expected = (
        'expected "HOST:PORT" with an IP address (like "127.0.0.1:9127" or "[::1]:9127"), or ""'
    )
    if not isinstance(value, str) or ":" not in value:
        msg = f"{expected}, got {_show(value)}"
        raise _Invalid(msg)
    host, _, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        msg = f"{expected}, got {_show(value)}: {host!r} is not an IP address"
        raise _Invalid(msg) from None
    if not (port.isascii() and port.isdigit() and int(port) <= 65535):
        msg = f"{expected}, got {_show(value)}: the port must be 0 to 65535"
        raise _Invalid(msg)
    return str(address), int(port)


def _textfile(base_dir: str) -> _Parser[str | None]:
    resolve = _optional_path(base_dir)

    def parse(value: object) -> str | None:
        path = resolve(value)
        if path is not None and not path.endswith(".prom"):
            # node_exporter's textfile collector reads *.prom files only
            what = 'a path ending in ".prom" (node_exporter reads only those)'
            msg = f"expected {what}, got {_show(value)}"
            raise _Invalid(msg)
        return path

    return parse


def _read_metrics(table: _Table) -> MetricsConfig:
    interval = table.get("interval", _duration)
    if interval < 1:
        reason = f"expected at least 1 second, got {interval:g}"
        raise table.error(reason, "interval")
    return MetricsConfig(
        listen=table.get("listen", _listen_address),
        textfile=table.get("textfile", _textfile(table.ctx.base_dir)),
        interval=interval,
    )


def _read_control(table: _Table) -> ControlConfig:
    max_connections = table.get("max_connections", _positive_int)
    headroom = table.get_optional("connection_headroom", _non_negative_int)
    if headroom is None:
        headroom = min(max(1, max_connections // 8), max_connections - 1)
    elif headroom >= max_connections:
        reason = f"expected less than max_connections ({max_connections}), got {headroom}"
        raise table.error(reason, "connection_headroom")
    step = table.get("query_step", _duration)
    if not 0.001 <= step <= 1.0:
        reason = f"expected between 1ms and 1s, got {step:g} s"
        raise table.error(reason, "query_step")
    buffer_bytes = table.get("query_buffer_bytes", _size(minimum=65536))
    memory_bytes = table.get("query_memory_bytes", _size(minimum=65536))
    if memory_bytes < buffer_bytes:
        reason = f"expected at least query_buffer_bytes ({buffer_bytes}), got {memory_bytes}"
        raise table.error(reason, "query_memory_bytes")
    return ControlConfig(
        max_connections=max_connections,
        max_connections_per_uid=table.get("max_connections_per_uid", _positive_int),
        connection_headroom=headroom,
        request_timeout=table.get("request_timeout", _duration),
        first_byte_timeout=table.get("first_byte_timeout", _duration),
        max_queries_per_uid=table.get("max_queries_per_uid", _positive_int),
        query_buffer_bytes=buffer_bytes,
        query_memory_bytes=memory_bytes,
        query_step=step,
        regex_memory_bytes=table.get("regex_memory_bytes", _size(minimum=1 << 20)),
    )


def _read_identity(table: _Table) -> IdentityConfig:
    optional_path = _optional_path(table.ctx.base_dir)
    subuid = table.get("subuid_file", optional_path)
    subgid = table.get("subgid_file", optional_path)
    return IdentityConfig(
        may_claim=table.get("may_claim", _claims),
        subordinate_ids=table.get("subordinate_ids", _choice(SUBORDINATE_IDS_CHOICES)),
        # the environment names the files only where the config does not (tests)
        subuid_file=subuid or os.environ.get(SUBUID_ENV) or "/etc/subuid",
        subgid_file=subgid or os.environ.get(SUBGID_ENV) or "/etc/subgid",
    )


def _split_address(address: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:PORT"`` for IPv6) -> ``(host, port)``; ``ValueError`` otherwise."""
    match = _ADDRESS.fullmatch(address)
    if match is None:
        like = '(like "logs.example.com:6514" or "[::1]:6514")'
        msg = f'expected "HOST:PORT" {like}, got {_show(address)}'
        raise ValueError(msg)
    host = match["v6"] or match["host"]
    port = int(match["port"])
    if not 0 < port <= 65535:
        msg = f"expected a port from 1 to 65535, got {port} in {_show(address)}"
        raise ValueError(msg)
    if match["v6"] is not None:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            msg = f"{host!r} is not an IPv6 address in {_show(address)}"
            raise ValueError(msg) from None
    return host, port


def _address(value: object) -> str:
    if not isinstance(value, str):
        msg = f'expected "HOST:PORT", got {_show(value)}'
        raise _Invalid(msg)
    try:
        _split_address(value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return value


def _forward_name(value: object) -> str:
    if isinstance(value, str) and _FORWARD_NAME.fullmatch(value):
        return value
    msg = (
        "expected a name of letters, digits, '_', '.' and '-' (at most 64, starting with a "
        f"letter or digit), got {_show(value)}"
    )
    raise _Invalid(msg)


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    msg = f"expected true or false, got {_show(value)}"
    raise _Invalid(msg)


def _uid_list(value: object) -> tuple[int, ...]:
    if isinstance(value, list) and all(_is_int(v) and 0 <= v <= MAX_UID for v in value):
        return tuple(dict.fromkeys(value))
    msg = f"expected an array of uids (integers 0 to {MAX_UID}), like [0, 1000], got {_show(value)}"
    raise _Invalid(msg)


def _facility_list(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        for item in value:
            if item not in FACILITIES or not isinstance(item, str):
                msg = f"expected facility names (kern, user, daemon, local0 ...), got {_show(item)}"
                raise _Invalid(msg)
        return tuple(dict.fromkeys(value))
    msg = f'expected an array of facility names, like ["auth", "daemon"], got {_show(value)}'
    raise _Invalid(msg)


def _hostname(value: object) -> str | None:
    if value == "":
        return None
    # RFC 5424 §6.2.4: HOSTNAME = NILVALUE / 1*255PRINTUSASCII
    if isinstance(value, str) and _PRINTUSASCII.fullmatch(value) and len(value) <= 255:
        return value
    msg = (
        f'expected a host name (printable ASCII, no spaces, at most 255), or "", got {_show(value)}'
    )
    raise _Invalid(msg)


def _optional_text(value: object) -> str | None:
    if value == "":
        return None
    if isinstance(value, str) and "\x00" not in value:
        return value
    msg = f'expected a string, or "" for none, got {_show(value)}'
    raise _Invalid(msg)


def _read_forward(table: _Table, raw: Mapping[str, object]) -> ForwardConfig:
    for key in ("name", "address"):
        if key not in raw:
            reason = 'missing: every [[forward]] needs a name and an address ("HOST:PORT")'
            raise table.error(reason, key)
    protocol = table.get("protocol", _choice(FORWARD_PROTOCOLS))
    if protocol != "tls":
        for key in _TLS_KEYS:
            if key in raw:
                reason = f'only with protocol = "tls" (this destination uses {protocol!r})'
                raise table.error(reason, key)
    optional_path = _optional_path(table.ctx.base_dir)
    cert_file = table.get("cert_file", optional_path)
    key_file = table.get("key_file", optional_path)
    if key_file is not None and cert_file is None:
        reason = "expected cert_file too: a key without its certificate is of no use"
        raise table.error(reason, "key_file")
    commit_delay = table.get("commit_delay", _duration)
    if commit_delay > 3600:
        reason = f"expected at most 1h (records stay unconfirmed that long), got {commit_delay:g}s"
        raise table.error(reason, "commit_delay")
    timeout = table.get("timeout", _duration)
    if timeout < 1:
        reason = f"expected at least 1s, got {timeout:g}s"
        raise table.error(reason, "timeout")
    retry_max = table.get("retry_max", _duration)
    if retry_max < 1:
        reason = f"expected at least 1s, got {retry_max:g}s"
        raise table.error(reason, "retry_max")
    return ForwardConfig(
        name=table.get("name", _forward_name),
        address=table.get("address", _address),
        protocol=protocol,
        ca_file=table.get("ca_file", optional_path),
        cert_file=cert_file,
        key_file=key_file,
        server_name=table.get("server_name", _optional_text),
        verify=table.get("verify", _boolean),
        uids=table.get("uids", _uid_list),
        min_severity=table.get("min_severity", _choice(SEVERITIES)),
        facilities=table.get("facilities", _facility_list),
        hostname=table.get("hostname", _hostname),
        start=table.get("start", _choice(FORWARD_STARTS)),
        commit_delay=commit_delay,
        timeout=timeout,
        retry_max=retry_max,
    )


def _read_forwards(root: _Table) -> tuple[ForwardConfig, ...]:
    raw = root.raw.get("forward", [])
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        reason = "expected an array of tables, written [[forward]] (with two brackets)"
        raise root.error(reason, "forward")
    out: list[ForwardConfig] = []
    names: dict[str, int] = {}
    for i, item in enumerate(raw, 1):
        label = _element_label("forward", i)
        table = _Table(root.ctx, ("forward",), {**FORWARD_DEFAULTS, **item}, label)
        forward = _read_forward(table, item)
        if forward.name in names:
            first = _element_label("forward", names[forward.name])
            reason = (
                f"{_show(forward.name)} is also the name of {first}: "
                "names must be unique (each has its own cursor)"
            )
            raise table.error(reason, "name")
        names[forward.name] = i
        out.append(forward)
    return tuple(out)


def _build(raw: Mapping[str, object], ctx: _Ctx, path: str | None) -> Config:
    _check_names(raw, _SCHEMA, (), ctx.file)
    root = _Table(ctx, (), raw)
    daemon = _read_daemon(root.table("daemon"))
    store = _read_store(root.table("store"))
    limits = root.table("limits")
    limits_default = _read_limits(limits.table("default"), daemon.max_message_bytes)
    limits_uid = _read_uid_overrides(limits, daemon.max_message_bytes)
    limits_user = _read_named_overrides(limits, "user", daemon.max_message_bytes)
    limits_group = _read_named_overrides(limits, "group", daemon.max_message_bytes)
    access = _read_access(root.table("access"))
    identity = _read_identity(root.table("identity"))
    metrics = _read_metrics(root.table("metrics"))
    control = _read_control(root.table("control"))
    forward = _read_forwards(root)
    return Config(
        path=path,
        daemon=daemon,
        store=store,
        limits_default=limits_default,
        limits_uid=MappingProxyType(limits_uid),
        limits_user=MappingProxyType(limits_user),
        limits_group=MappingProxyType(limits_group),
        access=access,
        identity=identity,
        metrics=metrics,
        forward=forward,
        control=control,
    )


# --------------------------------------------------------------------------- loading


@functools.cache
def _default_tables() -> Mapping[str, object]:
    text = importlib.resources.files("trio_logd").joinpath("default.toml").read_text("utf-8")
    return tomllib.loads(text)


def _merge(base: Mapping[str, object], over: Mapping[str, object]) -> dict[str, object]:
    """*over* laid on *base*: tables merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            merged[key] = _merge(below, value)
        else:
            merged[key] = value
    return merged


def _base_dir(base_dir: str | None) -> str:
    return os.getcwd() if base_dir is None else os.path.abspath(base_dir)


def _load_text(text: str, *, file: str, path: str | None, base: str) -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", _toml_reason(exc)) from None
    return _build(_merge(_default_tables(), raw), _Ctx(file=file, base_dir=base), path)


def _toml_reason(exc: tomllib.TOMLDecodeError) -> str:
    """``invalid TOML at line 3, column 10: invalid value`` from tomllib's message."""
    match = _TOML_ERROR.fullmatch(str(exc))
    if match is None:
        return f"invalid TOML: {exc}"
    what, line, column = match.groups()
    where = f"line {line}, column {column}" if line else "end of file"
    what = what[:1].lower() + what[1:]
    return f"invalid TOML at {where}: {what}"
