"""One reader per table of the config, and ``_build``: the whole file (``trio_logd.config``)."""

from __future__ import annotations

import functools
import importlib.resources
import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from types import MappingProxyType

from trio_logd._config_values import (
    _FORWARD_NAME,
    _NAME,
    _UID_NAME,
    _check_names,
    _choice,
    _claims,
    _Ctx,
    _duration,
    _element_label,
    _group_names,
    _Invalid,
    _is_int,
    _mode,
    _non_negative_int,
    _optional_path,
    _Parser,
    _path,
    _positive_int,
    _show,
    _size,
    _split_address,
    _Table,
    _toml_key,
)
from trio_logd.config import (
    _SCHEMA,
    _TLS_KEYS,
    COMPRESS_CHOICES,
    FORWARD_DEFAULTS,
    FORWARD_PROTOCOLS,
    FORWARD_STARTS,
    FSYNC_CHOICES,
    HEADROOM_DIVISOR,
    LOG_LEVELS,
    MAX_MESSAGE_BYTES,
    MAX_SOCKET_PATH_BYTES,
    MAX_UID,
    MIN_MESSAGE_BYTES,
    ON_QUOTA_CHOICES,
    ON_RATE_CHOICES,
    SUBGID_ENV,
    SUBORDINATE_IDS_CHOICES,
    SUBUID_ENV,
    AccessConfig,
    Config,
    ControlConfig,
    DaemonConfig,
    ForwardConfig,
    IdentityConfig,
    Limits,
    LimitsOverride,
    MetricsConfig,
    StoreConfig,
)
from trio_logd.protocol.message import FACILITIES, SEVERITIES
from trio_logd.protocol.rfc5424_writer import is_hostname

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
        pressure_min_age=table.get("pressure_min_age", _duration),
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

    def read(name: str, table: _Table) -> None:
        if not _UID_NAME.fullmatch(name) or int(name) > MAX_UID:
            hint = (
                "" if name.isdigit() else f" (for a user name use [limits.user.{_toml_key(name)}])"
            )
            reason = f"expected a uid (0 to {MAX_UID}, no leading zeros) as the table name{hint}"
            raise table.error(reason, None)
        result[int(name)] = _read_override(table, max_message_bytes)

    for name, table in limits.subtables("uid"):
        limits.ctx.attempt(functools.partial(read, name, table), lambda: None)
    return result


def _read_named_overrides(
    limits: _Table, kind: str, max_message_bytes: int
) -> dict[str, LimitsOverride]:
    result: dict[str, LimitsOverride] = {}

    def read(name: str, table: _Table) -> None:
        if not _NAME.fullmatch(name):
            hint = f" (for a uid use [limits.uid.{name}])" if name.isdigit() else ""
            reason = f"expected a {kind} name as the table name{hint}"
            raise table.error(reason, None)
        result[name] = _read_override(table, max_message_bytes)

    for name, table in limits.subtables(kind):
        limits.ctx.attempt(functools.partial(read, name, table), lambda: None)
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
    if isinstance(value, str) and is_hostname(value):
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
        table = _Table(
            root.ctx, ("forward",), {**FORWARD_DEFAULTS, **item}, label, defaults=FORWARD_DEFAULTS
        )
        read = functools.partial(_read_forward, table, item)
        forward = root.ctx.attempt(read, lambda: None)
        if forward is None:  # collecting errors: this element was wrong, go on to the next
            continue
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


@functools.cache
def _default_tables() -> Mapping[str, object]:
    """The embedded defaults (``trio_logd/default.toml``), parsed once."""
    text = importlib.resources.files("trio_logd").joinpath("default.toml").read_text("utf-8")
    return tomllib.loads(text)


def _build(raw: Mapping[str, object], ctx: _Ctx, path: str | None) -> Config:
    _check_names(raw, _SCHEMA, (), ctx.file, ctx.errors)
    defaults = _default_tables() if ctx.errors is not None else None
    root = _Table(ctx, (), raw, defaults=defaults)
    # the fallbacks only run when collecting errors: a table that fails is
    # replaced by the embedded defaults' (or left out) and reading goes on
    base = _Table(_Ctx(ctx.file, ctx.base_dir), (), _default_tables())
    daemon = ctx.attempt(
        lambda: _read_daemon(root.table("daemon")), lambda: _read_daemon(base.table("daemon"))
    )
    mmb = daemon.max_message_bytes
    store = ctx.attempt(
        lambda: _read_store(root.table("store")), lambda: _read_store(base.table("store"))
    )
    limits = root.table("limits")
    limits_default = ctx.attempt(
        lambda: _read_limits(limits.table("default"), mmb),
        lambda: _read_limits(base.table("limits").table("default"), mmb),
    )
    limits_uid = _read_uid_overrides(limits, mmb)
    limits_user = _read_named_overrides(limits, "user", mmb)
    limits_group = _read_named_overrides(limits, "group", mmb)
    access = ctx.attempt(
        lambda: _read_access(root.table("access")), lambda: _read_access(base.table("access"))
    )
    identity = ctx.attempt(
        lambda: _read_identity(root.table("identity")),
        lambda: _read_identity(base.table("identity")),
    )
    metrics = ctx.attempt(
        lambda: _read_metrics(root.table("metrics")), lambda: _read_metrics(base.table("metrics"))
    )
    control = ctx.attempt(
        lambda: _read_control(root.table("control")), lambda: _read_control(base.table("control"))
    )
    forward = ctx.attempt(lambda: _read_forwards(root), lambda: ())
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
