"""The TOML config of trio-logd: its schema, frozen dataclasses validated once at load.

``trio_logd.config`` is where every other module imports config names from;
the work is split by job:

- this module: the schema, the frozen dataclasses (``Config`` and its
  tables), their choices and bounds, and the pure limit resolution
  (``Config.limits_for``: user and group names are looked up by the caller);
- ``_config_values``: reading a table's values (``_Table``, one parser per
  kind of value, ``_check_names`` for unknown tables and keys);
- ``_config_tables``: one reader per table, and ``_build`` (the whole file);
- ``_config_load``: ``load``/``loads``, the embedded defaults, finding the
  file (``find_config``);
- ``trio_logd.identity``: NSS look-ups (``lookup_identity``), which may
  block: the daemon calls them in worker threads only.

How loading works: ``load``/``loads`` parse TOML with ``tomllib`` and lay the
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

Adding a table (say ``[[forward]]``): a frozen dataclass for it here, its
entry in ``_SCHEMA`` (for an array of tables, teach ``_check_names`` to check
each element against it), a ``_read_forward(table)`` in ``_config_tables`` in
the style of ``_read_store``, a field on ``Config``, one line in ``_build``,
its defaults in ``default.toml`` and its documentation in ``conf/logd.toml``
and ``docs/config.md``. Arrays of tables replace the default array rather than
merging with it (see ``_merge``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal

from trio_logd.identity import MAX_UID, Identity, lookup_identity
from trio_logd.locate import CONFIG_ENV_VAR, SYSTEM_CONFIG_PATH, find_config_path
from trio_logd.protocol.rfc5424_writer import MIN_MESSAGE_OCTETS

__all__ = [
    "COMPRESS_CHOICES",
    "CONFIG_ENV_VAR",
    "DEFAULTS_NAME",
    "FORWARD_PROTOCOLS",
    "FORWARD_STARTS",
    "FSYNC_CHOICES",
    "LOG_LEVELS",
    "MAX_UID",
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
    "UnitLimits",
    "default_config",
    "find_config",
    "find_config_path",
    "load",
    "load_all_errors",
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

# SPEC §5 discovery (``CONFIG_ENV_VAR``, ``SYSTEM_CONFIG_PATH``) is in
# ``trio_logd.locate``, which the CLIs and the client shim use without this module.

#: The ``file`` of errors found in the embedded defaults (a bug, caught by tests).
DEFAULTS_NAME: Final = "<embedded defaults>"

#: RFC 5424 §6.1: a receiver MUST accept messages of 480 octets.
MIN_MESSAGE_BYTES: Final = MIN_MESSAGE_OCTETS
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
#: Default headroom divisor: 2 % of max_connections reserved for root and admins.
HEADROOM_DIVISOR: Final = 50


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
        pressure_min_age: ``max_bytes``/``keep_free_bytes`` pressure never
            deletes a file with records younger than this many seconds (new
            records are dropped instead); ``0`` = pressure may delete any file.
    """

    max_file_bytes: int
    max_file_age: float
    compress: Compress
    max_age: float
    max_bytes: int
    keep_free_bytes: int
    fsync: FsyncPolicy
    pressure_min_age: float


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


@dataclass(frozen=True, slots=True)
class UnitLimits:
    """One ``[limits.unit."GLOB"]`` table: limits of every system unit the glob matches.

    Applied in addition to the uid's limits (a record must pass both), to
    each matching unit on its own (its own buckets and connection count).
    A key left out sets no limit of the unit's; ``burst_messages`` defaults
    to ``rate_messages`` and ``burst_bytes`` to the larger of ``rate_bytes``
    and ``[daemon] max_message_bytes``. No quota: quotas stay per uid.

    Attributes:
        pattern: the table's name, an ``fnmatch`` glob on the unit name.
        rate_messages, burst_messages, rate_bytes, burst_bytes: the unit's
            token buckets (``None``: no such limit).
        max_connections: concurrent ingest connections opened from the unit.
    """

    pattern: str
    rate_messages: int | None = None
    burst_messages: int | None = None
    rate_bytes: int | None = None
    burst_bytes: int | None = None
    max_connections: int | None = None


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
        from trio_logd._config_values import _parse_claim  # it imports this module

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
        from trio_logd._config_values import _split_address  # it imports this module

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
        limits_unit: ``[limits.unit."GLOB"]`` tables by glob, in file order
            (the first that matches a unit is its limits).
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
    limits_unit: Mapping[str, UnitLimits] = field(default_factory=lambda: MappingProxyType({}))

    def unit_limits_for(self, unit: str) -> UnitLimits | None:
        """The first ``[limits.unit."GLOB"]`` table (in file order) whose glob matches *unit*.

        ``fnmatch`` rules, case-sensitive: ``*`` and ``?`` match any characters,
        ``[…]`` a set.
        """
        for pattern, limits in self.limits_unit.items():
            if fnmatch.fnmatchcase(unit, pattern):
                return limits
        return None

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
        "unit": {"*": _keys(UnitLimits)[1:]},  # not "pattern": that is the table's name
    },
    "access": _keys(AccessConfig),
    "identity": _keys(IdentityConfig),
    "metrics": _keys(MetricsConfig),
    "control": _keys(ControlConfig),
    "forward": _keys(ForwardConfig),  # an array of tables: each element has these keys
}

#: A uid's limit keys that ``[limits.unit."GLOB"]`` tables do not take: quotas
#: and what happens over a limit stay per uid (named as such by the check).
_UID_ONLY: Final = frozenset(_keys(Limits)) - frozenset(_keys(UnitLimits))

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


#: The loading side (``_config_load``), under the names it always had here. It
#: imports the schema above, so it is imported on first use (``__getattr__``).
_LOADING: Final = frozenset(("default_config", "find_config", "load", "load_all_errors", "loads"))

if TYPE_CHECKING:  # for the type checker, the same objects as __getattr__ gives
    from trio_logd import _config_load

    default_config, load_all_errors = _config_load.default_config, _config_load.load_all_errors
    find_config, load, loads = _config_load.find_config, _config_load.load, _config_load.loads


def __getattr__(name: str) -> object:
    if name in _LOADING:
        from trio_logd import _config_load

        return getattr(_config_load, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
