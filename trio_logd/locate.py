"""Where the daemon's sockets and store are, read from the config without loading its schema.

The query and control CLIs and the client shim need one path each (``[daemon]
socket``, ``control_socket`` or ``log_dir``); loading and validating the whole
config (``trio_logd.config.load``) costs more than the rest of their start-up.
This module finds the file as every command does (SPEC §5: ``--config``, else
``$TRIO_LOGD_CONFIG``, else the system file if it exists, else the embedded
defaults), parses its TOML and checks only the key asked for, exactly as the
loader would (a non-empty path without NUL, relative to the current
directory). A file that is missing, not UTF-8 or not TOML is the same
:class:`~trio_logd.errors.ConfigError` as from the loader; errors in other
keys are left to the daemon and ``trio-logd check-config``.

It imports nothing of the package but ``errors``: keep it so (see
``tests/cli/test_startup.py``).
"""

from __future__ import annotations

import os
import re

from trio_logd.errors import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the CLIs' start-up)
if TYPE_CHECKING:
    import tomllib
    from collections.abc import Mapping
    from typing import Final

__all__ = [
    "CONFIG_ENV_VAR",
    "SYSTEM_CONFIG_PATH",
    "configured_path",
    "find_config_path",
    "read_config_text",
    "toml_reason",
]

#: SPEC §5: ``--config FILE``, else this variable, else
#: ``SYSTEM_CONFIG_PATH`` if it exists, else the embedded defaults.
CONFIG_ENV_VAR: Final = "TRIO_LOGD_CONFIG"
SYSTEM_CONFIG_PATH: Final = "/etc/trio-logd/logd.toml"
#: The embedded defaults, beside this module (the loader reads the same file).
_DEFAULTS_FILE: Final = os.path.join(os.path.dirname(__file__), "default.toml")
_TOML_ERROR: Final = re.compile(r"(.*) \((?:at line (\d+), column (\d+)|at end of document)\)")


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


def read_config_text(file: str) -> str:
    """The text of the config file *file*.

    Raises:
        ConfigError: it cannot be read or is not UTF-8.
    """
    try:
        with open(file, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        reason = f"cannot read: {exc.strerror or exc}"
        raise ConfigError(file, "", reason) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (bad byte at offset {exc.start})"
        raise ConfigError(file, "", reason) from exc


def toml_reason(exc: tomllib.TOMLDecodeError) -> str:
    """``invalid TOML at line 3, column 10: invalid value`` from tomllib's message."""
    match = _TOML_ERROR.fullmatch(str(exc))
    if match is None:
        return f"invalid TOML: {exc}"
    what, line, column = match.groups()
    where = f"line {line}, column {column}" if line else "end of file"
    what = what[:1].lower() + what[1:]
    return f"invalid TOML at {where}: {what}"


def configured_path(config: str | None, key: str) -> str:
    """The absolute path ``[daemon] KEY`` of the config every command uses.

    Args:
        config: the ``--config`` argument, if any.
        key: ``socket``, ``control_socket`` or ``log_dir``.

    Returns:
        The path, relative ones resolved against the current directory;
        the embedded default when the file leaves the key out.

    Raises:
        ConfigError: the file is missing, unreadable or not TOML, or the
            key's value is not a non-empty path.
    """
    import tomllib  # here: --help and an explicit --socket never pay for it

    file = find_config_path(config)
    if file is not None:
        try:
            raw = tomllib.loads(read_config_text(file))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(file, "", toml_reason(exc)) from None
        daemon = raw.get("daemon", {})
        if not isinstance(daemon, dict):
            raise ConfigError(file, "[daemon]", "expected a table")
        if key in daemon:
            return _resolve(file, key, daemon[key])
    with open(_DEFAULTS_FILE, "rb") as stream:
        value = tomllib.load(stream)["daemon"][key]
    return _resolve("<embedded defaults>", key, value)


def _resolve(file: str, key: str, value: object) -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        reason = f"expected a non-empty path, got {value!r}"
        raise ConfigError(file, f"[daemon] {key}", reason)
    return os.path.normpath(os.path.join(os.getcwd(), value))
