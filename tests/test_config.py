"""Config: loading, validation errors, defaults, discovery and limit resolution."""

from __future__ import annotations

import dataclasses
import math
import os
import pwd
import re
from pathlib import Path

import pytest

from trio_logd import config as config_module
from trio_logd._units import parse_duration, parse_size
from trio_logd.config import (
    SUBGID_ENV,
    SUBUID_ENV,
    AccessConfig,
    Config,
    DaemonConfig,
    Identity,
    IdentityConfig,
    Limits,
    LimitsOverride,
    StoreConfig,
    default_config,
    find_config,
    find_config_path,
    load,
    load_all_errors,
    loads,
    lookup_identity,
)
from trio_logd.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
BASE = "/srv"

DEFAULT_LIMITS = Limits(
    rate_messages=1000,
    burst_messages=10000,
    rate_bytes=1 << 20,
    burst_bytes=8 << 20,
    max_connections=64,
    quota_bytes=128 << 20,
    on_rate="drop",
    on_quota="rotate",
)


def load_text(text: str) -> Config:
    return loads(text, file="logd.toml", base_dir=BASE)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(text)
    return str(info.value)


# --------------------------------------------------------------------------- defaults


def test_embedded_defaults_are_documented_values() -> None:
    """The embedded defaults keep everything under the working directory and fit a small disk."""
    assert default_config(base_dir=BASE) == Config(
        path=None,
        daemon=DaemonConfig(
            socket="/srv/run/log.sock",
            control_socket="/srv/run/ctl.sock",
            datagram_socket=None,
            log_dir="/srv/var/log",
            max_message_bytes=65536,
            max_connections=1024,
            connection_headroom=20,
            socket_mode=0o666,
            idle_timeout=0.0,
            frame_timeout=30.0,
            shutdown_timeout=5.0,
            log_level="info",
        ),
        store=StoreConfig(
            max_file_bytes=8 << 20,
            max_file_age=86400.0,
            compress="zstd",
            max_age=30 * 86400.0,
            max_bytes=1 << 30,
            keep_free_bytes=256 << 20,
            fsync="batch",
            pressure_min_age=86400.0,
        ),
        limits_default=DEFAULT_LIMITS,
        limits_uid={},
        limits_user={},
        limits_group={},
        access=AccessConfig(readers=("adm",), admins=()),
        # the suite names test files in the environment (tests/conftest.py)
        identity=IdentityConfig(
            may_claim=(),
            subordinate_ids="owner",
            subuid_file=os.environ[SUBUID_ENV],
            subgid_file=os.environ[SUBGID_ENV],
        ),
    )


def test_subordinate_id_files_from_config_environment_or_etc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """subuid_file/subgid_file: the config's path, else the environment's, else /etc's."""
    given = load_text('[identity]\nsubuid_file = "/x/subuid"\nsubordinate_ids = "separate"\n')
    assert (given.identity.subuid_file, given.identity.subgid_file) == (
        "/x/subuid", os.environ[SUBGID_ENV],
    )  # fmt: skip
    assert given.identity.subordinate_ids == "separate"
    monkeypatch.delenv(SUBUID_ENV)
    monkeypatch.delenv(SUBGID_ENV)
    plain = load_text("")
    assert (plain.identity.subuid_file, plain.identity.subgid_file) == (
        "/etc/subuid",
        "/etc/subgid",
    )


def test_empty_file_gives_the_defaults() -> None:
    """A config file may leave out every key: it then means the embedded defaults."""
    assert load_text("") == default_config(base_dir=BASE)


def test_conf_logd_toml_loads_to_the_defaults() -> None:
    """conf/logd.toml, which `make run` uses, sets every key to its embedded default."""
    loaded = load(ROOT / "conf" / "logd.toml", base_dir=BASE)
    assert loaded.path == str(ROOT / "conf" / "logd.toml")
    assert dataclasses.replace(loaded, path=None) == default_config(base_dir=BASE)


def all_keys() -> list[str]:
    tables = (DaemonConfig, StoreConfig, Limits, AccessConfig)
    keys = [f.name for t in tables for f in dataclasses.fields(t)]
    return [*keys, "may_claim"]


@pytest.mark.parametrize("key", all_keys())
def test_conf_logd_toml_documents_every_key(key: str) -> None:
    """Every key appears in conf/logd.toml, set or commented out."""
    text = (ROOT / "conf" / "logd.toml").read_text(encoding="utf-8")
    assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE) is not None


@pytest.mark.parametrize("key", all_keys())
def test_docs_describe_every_key(key: str) -> None:
    """docs/config.md has an entry for every key."""
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert f"`{key}`" in text


SPEC_EXAMPLE = """
[daemon]
socket = "run/log.sock"          # ingest, SOCK_STREAM
control_socket = "run/ctl.sock"  # queries, stats, reload; the pid-socket
datagram_socket = ""             # optional /dev/log-style SOCK_DGRAM socket
log_dir = "var/log"
max_message_bytes = 65536
max_connections = 4096

[store]
max_file_bytes = 16777216
max_file_age = "1d"
compress = "zstd"                # none | gzip | zstd
max_age = "30d"
max_bytes = 10737418240          # all uids together
keep_free_bytes = 1073741824
fsync = "batch"                  # never | batch | always

[limits.default]                 # every uid, unless overridden below
rate_messages = 1000
burst_messages = 10000
rate_bytes = 1048576
burst_bytes = 8388608
max_connections = 64
quota_bytes = 268435456
on_rate = "drop"
on_quota = "rotate"

[limits.uid.0]                   # also [limits.user.NAME] and [limits.group.NAME]
rate_messages = 100000

[access]
readers = ["adm"]                # groups whose members may read every uid
admins = []                      # groups that may reload; root always may

[identity]
may_claim = []                   # "user:NAME", "uid:N" or "group:NAME" that may relay for others
"""


def test_spec_example_loads() -> None:
    """The skeleton of SPEC §5 is a valid config, read as written."""
    config = load_text(SPEC_EXAMPLE)
    assert (
        config.daemon.max_connections,
        config.daemon.connection_headroom,
        config.store,
        config.limits_uid,
        config.limits_for(0, user="root", groups=["root"]),
    ) == (
        4096,
        81,
        StoreConfig(
            max_file_bytes=16 << 20,
            max_file_age=86400.0,
            compress="zstd",
            max_age=30 * 86400.0,
            max_bytes=10 << 30,
            keep_free_bytes=1 << 30,
            fsync="batch",
            pressure_min_age=86400.0,
        ),
        {0: LimitsOverride(rate_messages=100000)},
        dataclasses.replace(DEFAULT_LIMITS, rate_messages=100000, quota_bytes=256 << 20),
    )


def test_partial_table_keeps_other_defaults() -> None:
    """A table that sets one key leaves the table's other keys at their defaults."""
    config = load_text('[store]\ncompress = "zstd"\n[limits.default]\nrate_messages = 5')
    defaults = default_config(base_dir=BASE)
    assert config.store == dataclasses.replace(defaults.store, compress="zstd")
    assert config.limits_default == dataclasses.replace(DEFAULT_LIMITS, rate_messages=5)
    assert config.daemon == defaults.daemon


def test_relative_paths_resolve_against_base_dir() -> None:
    """Relative paths are joined to base_dir and normalised; absolute ones stay."""
    config = load_text(
        '[daemon]\nsocket = "a/../b/log.sock"\ncontrol_socket = "/run/logd/ctl.sock"\n'
        'datagram_socket = "dev/log"\nlog_dir = "./logs/"'
    )
    assert (
        config.daemon.socket,
        config.daemon.control_socket,
        config.daemon.datagram_socket,
        config.daemon.log_dir,
    ) == ("/srv/b/log.sock", "/run/logd/ctl.sock", "/srv/dev/log", "/srv/logs")


def test_paths_resolve_against_working_directory_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without base_dir, relative paths resolve against the current working directory."""
    monkeypatch.chdir(tmp_path)
    config = default_config()
    assert (config.daemon.socket, config.daemon.log_dir) == (
        str(tmp_path / "run" / "log.sock"),
        str(tmp_path / "var" / "log"),
    )


def test_empty_datagram_socket_means_off() -> None:
    """datagram_socket = "" turns the datagram socket off (None)."""
    assert load_text('[daemon]\ndatagram_socket = ""').daemon.datagram_socket is None


def test_sizes_and_durations_accept_units() -> None:
    """Size keys take unit strings and duration keys take unit strings or seconds."""
    config = load_text(
        '[store]\nmax_file_bytes = "16MiB"\nmax_bytes = "10GB"\nkeep_free_bytes = 0\n'
        'max_file_age = "12h"\nmax_age = 3600\n'
        '[daemon]\nidle_timeout = 2.5\nframe_timeout = "1m30s"\nsocket_mode = "0600"'
    )
    assert (
        config.store.max_file_bytes,
        config.store.max_bytes,
        config.store.keep_free_bytes,
        config.store.max_file_age,
        config.store.max_age,
        config.daemon.idle_timeout,
        config.daemon.frame_timeout,
        config.daemon.socket_mode,
    ) == (16 << 20, 10 * 10**9, 0, 43200.0, 3600.0, 2.5, 90.0, 0o600)


@pytest.mark.parametrize(
    ("max_connections", "headroom"),
    [(1, 0), (2, 1), (10, 1), (100, 2), (5000, 100)],
)
def test_connection_headroom_default_is_two_percent(max_connections: int, headroom: int) -> None:
    """Without connection_headroom, max(1, 2 %) of max_connections is reserved, less than all."""
    config = load_text(f"[daemon]\nmax_connections = {max_connections}")
    assert config.daemon.connection_headroom == headroom


def test_connection_headroom_explicit() -> None:
    """An explicit connection_headroom (0 allowed) is taken as is."""
    config = load_text("[daemon]\nmax_connections = 10\nconnection_headroom = 0")
    assert config.daemon.connection_headroom == 0


def test_config_is_frozen() -> None:
    """Config objects cannot be changed after load."""
    config = default_config(base_dir=BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.daemon.socket = "/tmp/x"  # type: ignore[misc]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # [daemon]
        (
            "[daemon]\nsocket = 5",
            "logd.toml: [daemon] socket: expected a non-empty path, got 5",
        ),
        (
            '[daemon]\ncontrol_socket = ""',
            'logd.toml: [daemon] control_socket: expected a non-empty path, got ""',
        ),
        (
            "[daemon]\ndatagram_socket = true",
            'logd.toml: [daemon] datagram_socket: expected a path, or "" for none, got true',
        ),
        (
            "[daemon]\nlog_dir = []",
            "logd.toml: [daemon] log_dir: expected a non-empty path, got an array",
        ),
        (
            '[daemon]\nmax_message_bytes = "big"',
            "logd.toml: [daemon] max_message_bytes: expected a positive number of bytes "
            '(an integer, or a string like "16MiB"), got "big"',
        ),
        (
            "[daemon]\nmax_message_bytes = 100",
            "logd.toml: [daemon] max_message_bytes: expected between 480 (RFC 5424 §6.1) and "
            "16777216 (16 MiB), got 100",
        ),
        (
            "[daemon]\nmax_connections = 0",
            "logd.toml: [daemon] max_connections: expected a positive integer, got 0",
        ),
        (
            "[daemon]\nconnection_headroom = -1",
            "logd.toml: [daemon] connection_headroom: expected an integer >= 0, got -1",
        ),
        (
            "[daemon]\nmax_connections = 10\nconnection_headroom = 10",
            "logd.toml: [daemon] connection_headroom: expected less than max_connections (10), "
            "got 10",
        ),
        (
            "[daemon]\nsocket_mode = 666",
            "logd.toml: [daemon] socket_mode: expected permission bits like 0o666 or "
            '"0666", got 666 (a decimal number; write 0o666 for octal)',
        ),
        (
            '[daemon]\nsocket_mode = "rw-rw-rw-"',
            "logd.toml: [daemon] socket_mode: expected permission bits like 0o666 or "
            '"0666", got "rw-rw-rw-"',
        ),
        (
            "[daemon]\nidle_timeout = -1",
            "logd.toml: [daemon] idle_timeout: expected a duration (seconds, or a string like "
            '"45s", "30m", "12h", "1d", "2w"), got -1',
        ),
        (
            '[daemon]\nframe_timeout = "soon"',
            "logd.toml: [daemon] frame_timeout: expected a duration (seconds, or a string like "
            '"45s", "30m", "12h", "1d", "2w"), got "soon"',
        ),
        (
            "[daemon]\nshutdown_timeout = true",
            "logd.toml: [daemon] shutdown_timeout: expected a duration (seconds, or a string "
            'like "45s", "30m", "12h", "1d", "2w"), got true',
        ),
        (
            '[daemon]\nlog_level = "verbose"',
            'logd.toml: [daemon] log_level: expected one of "debug", "info", "warning", '
            '"error", got "verbose"',
        ),
        # [store]
        (
            "[store]\nmax_file_bytes = 0",
            "logd.toml: [store] max_file_bytes: expected a positive number of bytes "
            '(an integer, or a string like "16MiB"), got 0',
        ),
        (
            '[store]\nmax_file_age = "1y"',
            "logd.toml: [store] max_file_age: expected a duration (seconds, or a string like "
            '"45s", "30m", "12h", "1d", "2w"), got "1y": unknown unit "y" '
            "(use ms, s, m, h, d or w)",
        ),
        (
            '[store]\ncompress = "lz4"',
            'logd.toml: [store] compress: expected one of "none", "gzip", "zstd", got "lz4"',
        ),
        (
            "[store]\nmax_age = 1e300",
            "logd.toml: [store] max_age: expected a duration (seconds, or a string like "
            '"45s", "30m", "12h", "1d", "2w"), got 1e+300: longer than 100 years',
        ),
        (
            '[store]\nmax_bytes = "1.5B"',
            "logd.toml: [store] max_bytes: expected a positive number of bytes "
            '(an integer, or a string like "16MiB"), got "1.5B": "1.5B" is not a whole '
            "number of bytes",
        ),
        (
            "[store]\nkeep_free_bytes = -1",
            "logd.toml: [store] keep_free_bytes: expected a number of bytes >= 0 "
            '(an integer, or a string like "16MiB"), got -1',
        ),
        (
            '[store]\nfsync = "sometimes"',
            'logd.toml: [store] fsync: expected one of "never", "batch", "always", got "sometimes"',
        ),
        # [limits.default]
        (
            "[limits.default]\nrate_messages = 1.5",
            "logd.toml: [limits.default] rate_messages: expected a positive integer, got 1.5",
        ),
        (
            "[limits.default]\nburst_messages = 0",
            "logd.toml: [limits.default] burst_messages: expected a positive integer, got 0",
        ),
        (
            "[limits.default]\nrate_bytes = false",
            "logd.toml: [limits.default] rate_bytes: expected a positive number of bytes "
            '(an integer, or a string like "16MiB"), got false',
        ),
        (
            "[limits.default]\nburst_bytes = 1000",
            "logd.toml: [limits.default] burst_bytes: expected at least [daemon] "
            "max_message_bytes (65536), so that the longest record can pass, got 1000",
        ),
        (
            '[limits.default]\nmax_connections = "many"',
            'logd.toml: [limits.default] max_connections: expected a positive integer, got "many"',
        ),
        (
            "[limits.default]\nquota_bytes = -1",
            "logd.toml: [limits.default] quota_bytes: expected a positive number of bytes "
            '(an integer, or a string like "16MiB"), got -1',
        ),
        (
            '[limits.default]\non_rate = "wait"',
            'logd.toml: [limits.default] on_rate: expected one of "drop", "block", got "wait"',
        ),
        (
            '[limits.default]\non_quota = "delete"',
            'logd.toml: [limits.default] on_quota: expected one of "rotate", "drop", got "delete"',
        ),
        # overrides
        (
            '[limits.uid.1000]\nrate_messages = "lots"',
            'logd.toml: [limits.uid.1000] rate_messages: expected a positive integer, got "lots"',
        ),
        (
            "[limits.uid.1000]\nrate_messages = -5",
            "logd.toml: [limits.uid.1000] rate_messages: expected a positive integer, got -5",
        ),
        (
            "[limits.user.alice]\nburst_bytes = 479",
            "logd.toml: [limits.user.alice] burst_bytes: expected at least [daemon] "
            "max_message_bytes (65536), so that the longest record can pass, got 479",
        ),
        (
            '[limits.group.wheel]\non_rate = "DROP"',
            'logd.toml: [limits.group.wheel] on_rate: expected one of "drop", "block", got "DROP"',
        ),
        (
            "[limits.uid.alice]\nrate_messages = 5",
            "logd.toml: [limits.uid.alice]: expected a uid (0 to 4294967294, no leading "
            "zeros) as the table name (for a user name use [limits.user.alice])",
        ),
        (
            "[limits.uid.01000]\nrate_messages = 5",
            "logd.toml: [limits.uid.01000]: expected a uid (0 to 4294967294, no leading "
            "zeros) as the table name",
        ),
        (
            "[limits.uid.4294967295]\nrate_messages = 5",
            "logd.toml: [limits.uid.4294967295]: expected a uid (0 to 4294967294, no leading "
            "zeros) as the table name",
        ),
        (
            "[limits.user.1000]\nrate_messages = 5",
            "logd.toml: [limits.user.1000]: expected a user name as the table name "
            "(for a uid use [limits.uid.1000])",
        ),
        (
            '[limits.group."a:b"]\nrate_messages = 5',
            'logd.toml: [limits.group."a:b"]: expected a group name as the table name',
        ),
        (
            "[limits.uid]\n1000 = 5",
            "logd.toml: [limits.uid] 1000: expected a table, got 5",
        ),
        # [access], [identity]
        (
            '[access]\nreaders = "adm"',
            'logd.toml: [access] readers: expected an array of group names (like ["adm"]), '
            'got "adm"',
        ),
        (
            "[access]\nadmins = [5]",
            "logd.toml: [access] admins: expected a group name, got 5",
        ),
        (
            '[identity]\nmay_claim = "user:relay"',
            'logd.toml: [identity] may_claim: expected an array like ["user:NAME", "uid:N", '
            '"group:NAME"], got "user:relay"',
        ),
        (
            '[identity]\nmay_claim = ["alice"]',
            'logd.toml: [identity] may_claim: expected "user:NAME", "uid:N" or "group:NAME", '
            'got "alice"',
        ),
        (
            '[identity]\nmay_claim = ["uid:-1"]',
            'logd.toml: [identity] may_claim: expected "user:NAME", "uid:N" or "group:NAME", '
            'got "uid:-1"',
        ),
        (
            '[identity]\nmay_claim = ["user:"]',
            'logd.toml: [identity] may_claim: expected "user:NAME", "uid:N" or "group:NAME", '
            'got "user:"',
        ),
        (
            "[identity]\nmay_claim = [1000]",
            'logd.toml: [identity] may_claim: expected "user:NAME", "uid:N" or "group:NAME", '
            "got 1000",
        ),
        # tables of the wrong type
        ("daemon = 5", "logd.toml: daemon: expected a table, got 5"),
        (
            "[daemon.socket]\npath = 1",
            "logd.toml: [daemon] socket: expected a non-empty path, got a table",
        ),
    ],
)
def test_bad_value_names_file_key_and_reason(text: str, message: str) -> None:
    """A bad value is refused with the file, the [table] key, what was expected and what came."""
    assert error_of(text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[daemon]\nsokcet = "x"',
            "logd.toml: [daemon] sokcet: unknown key (did you mean socket?)",
        ),
        (
            "[limits.uid.1000]\nrate_mesages = 1",
            "logd.toml: [limits.uid.1000] rate_mesages: unknown key (did you mean rate_messages?)",
        ),
        ("[store]\ncolour = 1", "logd.toml: [store] colour: unknown key"),
        ('[deamon]\nsocket = "x"', "logd.toml: [deamon]: unknown table (did you mean [daemon]?)"),
        (
            "[forwarding]\nhost = 1",
            "logd.toml: [forwarding]: unknown table (did you mean [forward]?)",
        ),
        (
            "[limits.users.alice]\nrate_messages = 5",
            "logd.toml: [limits.users]: unknown table (did you mean [limits.user]?)",
        ),
        (
            "[limits.defaults]\nrate_messages = 5",
            "logd.toml: [limits.defaults]: unknown table (did you mean [limits.default]?)",
        ),
        # a key in the wrong table: name the table where it lives
        ('socket = "x"', "logd.toml: socket: unknown key (did you mean [daemon] socket?)"),
        (
            "[limits]\nrate_messages = 5",
            "logd.toml: [limits] rate_messages: unknown key "
            "(did you mean [limits.default] rate_messages?)",
        ),
        (
            '[store]\nlog_dir = "x"',
            "logd.toml: [store] log_dir: unknown key (did you mean [daemon] log_dir?)",
        ),
        (
            "[limits]\nmax_connections = 5",
            "logd.toml: [limits] max_connections: unknown key "
            "(did you mean [limits.default] max_connections?)",
        ),
        (
            "[limits.uid.1000]\nlog_dir = 5",
            "logd.toml: [limits.uid.1000] log_dir: unknown key (did you mean [daemon] log_dir?)",
        ),
        ("[daemon.extra]\nx = 1", "logd.toml: [daemon.extra]: unknown table"),
        # a typo is reported before the errors its absence would cause
        (
            "[daemon]\nmax_message_bytes = 16777216\n[limits.default]\nburst_btyes = 16777216",
            "logd.toml: [limits.default] burst_btyes: unknown key (did you mean burst_bytes?)",
        ),
    ],
)
def test_unknown_names_are_refused_with_a_suggestion(text: str, message: str) -> None:
    """Unknown tables and keys are errors that suggest the closest known name or its table."""
    assert error_of(text) == message


_UNIT_UID_ONLY = (
    "a uid's key, not a unit's: quotas stay per uid, and a unit over its rate is treated as "
    "its uid's on_rate says; set it in [limits.default], [limits.uid.N], [limits.user.NAME] "
    "or [limits.group.NAME]"
)


@pytest.mark.parametrize(
    ("key", "value"), [("quota_bytes", '"5MiB"'), ("on_quota", '"drop"'), ("on_rate", '"block"')]
)
def test_a_uid_only_key_in_a_unit_table_says_quotas_stay_per_uid(key: str, value: str) -> None:
    """quota_bytes, on_quota, on_rate in [limits.unit."GLOB"]: an error naming table and key."""
    text = f'[limits.unit."nginx*.service"]\nrate_messages = 5\n{key} = {value}'
    assert error_of(text) == (f'logd.toml: [limits.unit."nginx*.service"] {key}: {_UNIT_UID_ONLY}')


def test_config_error_fields() -> None:
    """ConfigError carries file, key and reason separately, for callers that match on them."""
    with pytest.raises(ConfigError) as info:
        load_text('[limits.uid.1000]\nrate_messages = "lots"')
    error = info.value
    assert (error.file, error.key, error.reason) == (
        "logd.toml",
        "[limits.uid.1000] rate_messages",
        'expected a positive integer, got "lots"',
    )


def test_toml_syntax_error_names_line_and_column() -> None:
    """A TOML syntax error names the file, the line and the column."""
    with pytest.raises(ConfigError) as info:
        load_text("[daemon]\nsocket = \n")
    assert (str(info.value), info.value.key) == (
        "logd.toml: invalid TOML at line 2, column 10: invalid value",
        "",
    )


def test_toml_error_at_end_of_document() -> None:
    """A TOML error found at the end of the text says so."""
    assert error_of('[daemon]\nsocket = "unterminated') == (
        "logd.toml: invalid TOML at end of file: unterminated string"
    )


def test_duplicate_key_is_a_toml_error() -> None:
    """A key set twice is refused (TOML forbids it)."""
    assert error_of("[store]\nfsync = 'never'\nfsync = 'always'\n") == (
        "logd.toml: invalid TOML at line 3, column 17: cannot overwrite a value"
    )


def test_socket_path_too_long() -> None:
    """A socket path longer than a sockaddr_un holds is refused at load, not at bind."""
    long_dir = "d" * 100
    assert error_of(f'[daemon]\nsocket = "{long_dir}/log.sock"') == (
        f'logd.toml: [daemon] socket: "/srv/{long_dir}/log.sock" is 114 bytes long; a Unix '
        "socket path has at most 107 (use a shorter directory)"
    )


def test_two_sockets_on_one_path() -> None:
    """Two sockets configured on the same path are refused."""
    assert error_of('[daemon]\ncontrol_socket = "run/log.sock"') == (
        'logd.toml: [daemon] control_socket: "/srv/run/log.sock" is the same path as socket'
    )


def test_load_missing_file(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming the path as given."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == f"{path}: cannot read: No such file or directory"


def test_load_directory(tmp_path: Path) -> None:
    """A directory given as the config file is a ConfigError."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    assert str(info.value) == f"{tmp_path}: cannot read: Is a directory"


def test_load_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a ConfigError giving the bad byte's offset."""
    path = tmp_path / "logd.toml"
    path.write_bytes(b'[daemon]\nlog_dir = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == f"{path}: not UTF-8 text (bad byte at offset 23)"


def test_load_names_file_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Errors name the file as it was given; Config.path is absolute."""
    monkeypatch.chdir(tmp_path)
    Path("logd.toml").write_text("[daemon]\nmax_connections = 0\n")
    with pytest.raises(ConfigError) as info:
        load("logd.toml")
    assert str(info.value) == (
        "logd.toml: [daemon] max_connections: expected a positive integer, got 0"
    )
    Path("logd.toml").write_text("[daemon]\nmax_connections = 5\n")
    assert load("logd.toml").path == str(tmp_path / "logd.toml")


def test_load_accepts_utf8_bom(tmp_path: Path) -> None:
    """A UTF-8 byte order mark (from some editors) does not make the file invalid."""
    path = tmp_path / "logd.toml"
    path.write_bytes(b"\xef\xbb\xbf[store]\nfsync = 'always'\n")
    assert load(path).store.fsync == "always"


# --------------------------------------------------------------------------- limit resolution

PRECEDENCE = """
[limits.default]
rate_messages = 10
burst_messages = 20
rate_bytes = 100000
burst_bytes = 200000
max_connections = 5
quota_bytes = 1000000
on_rate = "drop"
on_quota = "rotate"

[limits.group.staff]
rate_messages = 11
burst_messages = 21
rate_bytes = 100001
on_rate = "block"

[limits.user.alice]
rate_messages = 12
burst_messages = 22

[limits.uid.1000]
rate_messages = 13
"""


def test_limits_precedence_per_key() -> None:
    """Each key comes from uid, else user, else group, else default, independently."""
    config = load_text(PRECEDENCE)
    assert config.limits_for(1000, user="alice", groups=["staff"]) == Limits(
        rate_messages=13,  # uid
        burst_messages=22,  # user
        rate_bytes=100001,  # group
        burst_bytes=200000,  # default
        max_connections=5,
        quota_bytes=1000000,
        on_rate="block",  # group
        on_quota="rotate",
    )


@pytest.mark.parametrize(
    ("uid", "user", "groups", "rate_messages", "burst_messages"),
    [
        (1000, "alice", ["staff"], 13, 22),
        (1001, "alice", ["staff"], 12, 22),
        (1001, "bob", ["staff"], 11, 21),
        (1001, "bob", ["users"], 10, 20),
        (1000, None, [], 13, 20),
        (1001, None, [], 10, 20),
    ],
)
def test_limits_layers_apply_only_when_they_match(
    uid: int, user: str | None, groups: list[str], rate_messages: int, burst_messages: int
) -> None:
    """A layer applies only to its uid, user or group members."""
    limits = load_text(PRECEDENCE).limits_for(uid, user=user, groups=groups)
    assert (limits.rate_messages, limits.burst_messages) == (rate_messages, burst_messages)


def test_limits_without_overrides_are_the_default_object() -> None:
    """A uid no table names gets [limits.default] itself."""
    config = load_text(PRECEDENCE)
    assert config.limits_for(4242, user="carol", groups=["users"]) is config.limits_default


MULTI_GROUP = """
[limits.group.batch]
rate_messages = 50000
quota_bytes = 1000
on_rate = "block"

[limits.group.devs]
rate_messages = 2000
burst_messages = 30000
quota_bytes = 5000
on_rate = "drop"
on_quota = "drop"
"""


@pytest.mark.parametrize("groups", [["batch", "devs"], ["devs", "batch"], ["x", "devs", "batch"]])
def test_several_groups_most_generous_number_first_policy_in_file(groups: list[str]) -> None:
    """Among group tables, numbers take the largest value; policies the first table in the file."""
    limits = load_text(MULTI_GROUP).limits_for(1000, user="dave", groups=groups)
    assert limits == dataclasses.replace(
        DEFAULT_LIMITS,
        rate_messages=50000,
        burst_messages=30000,
        quota_bytes=5000,
        on_rate="block",
        on_quota="drop",
    )


def test_group_tables_keep_file_order() -> None:
    """limits_group keeps the order of the file, which decides policies between groups."""
    config = load_text("[limits.group.zeta]\non_rate='block'\n[limits.group.alpha]\n")
    assert list(config.limits_group) == ["zeta", "alpha"]
    assert config.limits_group["zeta"] == LimitsOverride(on_rate="block")


def test_uid_override_beats_groups_even_when_smaller() -> None:
    """A uid table wins over a group table, even with a less generous value."""
    config = load_text(MULTI_GROUP + "[limits.uid.1000]\nrate_messages = 1\n")
    assert config.limits_for(1000, user=None, groups=["batch"]).rate_messages == 1


# --------------------------------------------------------------------------- access and identity


ACCESS = """
[access]
readers = ["adm", "auditors"]
admins = ["logadmin"]

[identity]
may_claim = ["user:dockerd", "uid:998", "group:relays"]
"""


@pytest.mark.parametrize(
    ("uid", "groups", "reader", "admin"),
    [
        (0, [], True, True),
        (1000, [], False, False),
        (1000, ["users", "auditors"], True, False),
        (1000, ["logadmin"], False, True),
        (1000, ["adm", "logadmin"], True, True),
    ],
)
def test_readers_and_admins(uid: int, groups: list[str], reader: bool, admin: bool) -> None:
    """Root is always reader and admin; others by group; admin does not imply reader."""
    config = load_text(ACCESS)
    assert (config.is_reader(uid, groups), config.is_admin(uid, groups)) == (reader, admin)


@pytest.mark.parametrize(
    ("uid", "user", "groups", "allowed"),
    [
        (1500, "dockerd", [], True),
        (998, None, [], True),
        (1600, "podman", ["relays"], True),
        (1000, "alice", ["users"], False),
        (0, "root", ["root"], False),
    ],
)
def test_may_claim(uid: int, user: str | None, groups: list[str], allowed: bool) -> None:
    """may_claim entries match by uid, user name or group; root is no relay unless listed."""
    assert load_text(ACCESS).may_claim_for(uid, user=user, groups=groups) is allowed


def test_identity_config_parses_entries() -> None:
    """IdentityConfig splits may_claim into uids, users and groups."""
    identity = load_text(ACCESS).identity
    assert (
        identity.may_claim,
        identity.claim_uids,
        identity.claim_users,
        identity.claim_groups,
    ) == (
        ("user:dockerd", "uid:998", "group:relays"),
        frozenset({998}),
        frozenset({"dockerd"}),
        frozenset({"relays"}),
    )


def test_identity_config_refuses_bad_entry_when_built_directly() -> None:
    """Building IdentityConfig by hand with a bad entry raises ValueError."""
    with pytest.raises(ValueError, match=r'got "pid:1"'):
        IdentityConfig(may_claim=("pid:1",))


def test_names_from_directories_are_accepted() -> None:
    """User and group names from LDAP/sssd (with @, . or inner spaces) are accepted."""
    config = load_text(
        '[limits.user."john@example.com"]\nrate_messages = 3\n'
        '[access]\nreaders = ["log.readers", "domain users"]\n'
    )
    assert config.limits_for(5000, user="john@example.com", groups=[]).rate_messages == 3
    assert config.access.readers == ("log.readers", "domain users")


# --------------------------------------------------------------------------- discovery


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Three config files that differ in [daemon] max_connections (1, 2, 3)."""
    result = {}
    for n, name in enumerate(("explicit", "env", "system"), start=1):
        path = tmp_path / f"{name}.toml"
        path.write_text(f"[daemon]\nmax_connections = {n}\n")
        result[name] = path
    return result


def test_discovery_explicit_first(files: dict[str, Path]) -> None:
    """--config FILE wins over the environment and the system file."""
    config = find_config(
        str(files["explicit"]),
        environ={"TRIO_LOGD_CONFIG": str(files["env"])},
        system_path=str(files["system"]),
    )
    assert (config.daemon.max_connections, config.path) == (1, str(files["explicit"]))


def test_discovery_environment_second(files: dict[str, Path]) -> None:
    """Without --config, $TRIO_LOGD_CONFIG wins over the system file."""
    config = find_config(
        None, environ={"TRIO_LOGD_CONFIG": str(files["env"])}, system_path=str(files["system"])
    )
    assert config.daemon.max_connections == 2


def test_discovery_system_file_third(files: dict[str, Path]) -> None:
    """Without --config or a non-empty $TRIO_LOGD_CONFIG, the system file is used if it exists."""
    config = find_config(None, environ={"TRIO_LOGD_CONFIG": ""}, system_path=str(files["system"]))
    assert config.daemon.max_connections == 3


def test_discovery_defaults_last(tmp_path: Path) -> None:
    """With nothing else, the embedded defaults are used."""
    config = find_config(None, environ={}, system_path=str(tmp_path / "absent.toml"), base_dir=BASE)
    assert config == default_config(base_dir=BASE)


def test_discovery_reads_os_environ(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default the environment is os.environ."""
    monkeypatch.setenv("TRIO_LOGD_CONFIG", str(files["env"]))
    assert find_config(None, system_path=str(files["system"])).daemon.max_connections == 2


def test_discovery_missing_named_file_is_an_error(tmp_path: Path) -> None:
    """A file named by $TRIO_LOGD_CONFIG must exist: no silent fallback to defaults."""
    missing = str(tmp_path / "typo.toml")
    with pytest.raises(ConfigError) as info:
        find_config(None, environ={"TRIO_LOGD_CONFIG": missing}, system_path="/nonexistent")
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"


def test_discovery_dangling_system_symlink_is_reported(tmp_path: Path) -> None:
    """A system config that is a dangling symlink is an error, not a fallback to defaults."""
    link = tmp_path / "logd.toml"
    link.symlink_to(tmp_path / "gone.toml")
    assert find_config_path(None, environ={}, system_path=str(link)) == str(link)
    with pytest.raises(ConfigError):
        find_config(None, environ={}, system_path=str(link))


@pytest.mark.parametrize(
    ("explicit", "environ", "expected"),
    [
        ("a.toml", {"TRIO_LOGD_CONFIG": "b.toml"}, "a.toml"),
        (None, {"TRIO_LOGD_CONFIG": "b.toml"}, "b.toml"),
        (None, {"TRIO_LOGD_CONFIG": ""}, None),
        (None, {}, None),
    ],
)
def test_find_config_path(
    explicit: str | None, environ: dict[str, str], expected: str | None
) -> None:
    """find_config_path names the file the discovery order picks, or None for defaults."""
    assert find_config_path(explicit, environ=environ, system_path="/nonexistent/logd.toml") == (
        expected
    )


def test_system_config_path_constant() -> None:
    """The system-wide file is /etc/trio-logd/logd.toml (SPEC §5)."""
    assert config_module.SYSTEM_CONFIG_PATH == "/etc/trio-logd/logd.toml"


# --------------------------------------------------------------------------- identity lookup


def test_lookup_identity_root() -> None:
    """Root's names come from the user and group databases."""
    root = pwd.getpwuid(0)
    identity = lookup_identity(0)
    assert identity.user == root.pw_name
    assert identity.groups[0] == "root"


def test_lookup_identity_unknown_uid() -> None:
    """A uid without a passwd entry has no user name and no groups."""
    assert lookup_identity(4_000_000_000) == Identity(None, ())


def test_lookup_identity_out_of_range() -> None:
    """A uid beyond uid_t is unknown, not an exception."""
    assert lookup_identity(1 << 40) == Identity(None, ())


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (0, 0.0),
        (45, 45.0),
        (2.5, 2.5),
        ("90", 90.0),
        ("45s", 45.0),
        ("30m", 1800.0),
        ("12h", 43200.0),
        ("1d", 86400.0),
        ("2w", 1209600.0),
        ("250ms", 0.25),
        ("1h30m", 5400.0),
        ("1d 12h", 129600.0),
        ("1.5h", 5400.0),
        ("5 min", 300.0),
        ("3 days", 259200.0),
        ("10S", 10.0),
    ],
)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    """Durations are seconds, or numbers with systemd-style units, summed."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("1y", 'unknown unit "y" (use ms, s, m, h, d or w)'),
        ("1h 30", '"30" needs a unit in a duration with several parts'),
        ("-5s", 'cannot read "-5s"'),
        ("h", 'cannot read "h"'),
        (-1, "must be a finite number >= 0"),
        (math.inf, "must be a finite number >= 0"),
        (True, "a boolean is not a duration"),
    ],
)
def test_parse_duration_errors(text: str | float, reason: str) -> None:
    """Bad durations raise ValueError saying what is wrong."""
    with pytest.raises(ValueError, match="^" + re.escape(reason) + "$"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (0, 0),
        (4096, 4096),
        ("4096", 4096),
        ("100B", 100),
        ("16MiB", 16 << 20),
        ("16M", 16 << 20),
        ("16m", 16 << 20),
        ("512K", 512 << 10),
        ("1GiB", 1 << 30),
        ("1 GiB", 1 << 30),
        ("2T", 2 << 40),
        ("1kB", 1000),
        ("1MB", 10**6),
        ("1GB", 10**9),
        ("1TB", 10**12),
        ("1.5GiB", 3 << 29),
        ("0.5K", 512),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    """Sizes are bytes, or numbers with IEC (1024) or SI (1000) units."""
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1.1B", '"1.1B" is not a whole number of bytes'),
        ("5 PB", 'unknown unit "PB" (use B, KiB, MiB, GiB, TiB, K, M, G, T, kB, MB, GB or TB)'),
        ("-1K", 'cannot read "-1K"'),
        ("", 'cannot read ""'),
        (-1, "must be >= 0"),
        (True, "a boolean is not a size"),
    ],
)
def test_parse_size_errors(text: str | int, reason: str) -> None:
    """Bad sizes raise ValueError saying what is wrong."""
    with pytest.raises(ValueError, match="^" + re.escape(reason) + "$"):
        parse_size(text)


# --------------------------------------------------------------------------- every error at once


def _all_errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return [f"{e.key}: {e.reason}" for e in load_all_errors(path, base_dir=BASE)]


def test_load_all_errors_goes_on_after_each_error(tmp_path: Path) -> None:
    """Every bad value, table name and unknown key is reported, not only the first."""
    text = (
        '[daemon]\nmax_connections = 0\nsocket_mode = "x"\nsockte = 1\n'
        '[store]\nfsync = "maybe"\n'
        '[limits.default]\nrate_messages = -1\non_rate = "panic"\n'
        '[limits.user."1000"]\nrate_messages = 1\n'
        "[limits.uid.7]\nquota_bytes = 0\n"
        '[[forward]]\nname = "x"\naddress = "h:1"\ntimeout = "0s"\n'
        '[[forward]]\naddress = "h:2"\n'
    )
    assert _all_errors(tmp_path, text) == [
        "[daemon] sockte: unknown key (did you mean socket?)",
        "[daemon] max_connections: expected a positive integer, got 0",
        '[daemon] socket_mode: expected permission bits like 0o666 or "0666", got "x"',
        '[store] fsync: expected one of "never", "batch", "always", got "maybe"',
        "[limits.default] rate_messages: expected a positive integer, got -1",
        '[limits.default] on_rate: expected one of "drop", "block", got "panic"',
        "[limits.uid.7] quota_bytes: expected a positive number of bytes (an integer, or a "
        'string like "16MiB"), got 0',
        "[limits.user.1000]: expected a user name as the table name (for a uid use "
        "[limits.uid.1000])",
        "[[forward]] #1 timeout: expected at least 1s, got 0s",
        '[[forward]] #2 name: missing: every [[forward]] needs a name and an address ("HOST:PORT")',
    ]


def test_load_all_errors_agrees_with_load(tmp_path: Path) -> None:
    """No errors for a file load accepts; the first error is the one load raises."""
    assert load_all_errors(ROOT / "conf" / "logd.toml", base_dir=BASE) == []
    path = tmp_path / "c.toml"
    path.write_text("[store]\ncompress = 1\n[daemon]\nmax_connections = 0\n")
    with pytest.raises(ConfigError) as raised:
        load(path, base_dir=BASE)
    errors = load_all_errors(path, base_dir=BASE)
    assert len(errors) == 2
    assert str(raised.value) in {str(e) for e in errors}


def test_load_all_errors_of_an_unreadable_or_broken_file(tmp_path: Path) -> None:
    """A missing file or invalid TOML is one error: nothing after it can be checked."""
    assert [str(e) for e in load_all_errors(tmp_path / "none.toml")] == [
        f"{tmp_path / 'none.toml'}: cannot read: No such file or directory"
    ]
    assert _all_errors(tmp_path, "[daemon\n") == [
        ": invalid TOML at line 1, column 8: expected ']' at the end of a table declaration"
    ]
