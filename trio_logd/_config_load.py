"""Loading the config: ``load``/``loads``, the embedded defaults, finding the file.

Part of ``trio_logd.config`` (import these names from there).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping

from trio_logd._config_tables import (
    _build,
    _default_tables,
)
from trio_logd._config_values import (
    _Ctx,
)
from trio_logd.config import DEFAULTS_NAME, SYSTEM_CONFIG_PATH, Config
from trio_logd.errors import ConfigError
from trio_logd.locate import find_config_path, read_config_text, toml_reason

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
    text = read_config_text(file)
    base = _base_dir(base_dir)
    return _load_text(text, file=file, path=os.path.normpath(os.path.join(base, file)), base=base)


def load_all_errors(
    path: str | os.PathLike[str], *, base_dir: str | None = None
) -> list[ConfigError]:
    """Every error in the config file at *path*, in file order as far as it can tell.

    :func:`load` stops at the first error; this goes on: a bad value is
    reported and its default used, a table that still fails is reported and
    its defaults used, so that one run of ``trio-logd check-config`` names
    everything to fix. A file that cannot be read or is not TOML gives one
    error (nothing after it can be checked).

    Args:
        path: the file; errors name it as given.
        base_dir: as for :func:`load`.

    Returns:
        The errors; empty when :func:`load` would succeed.
    """
    file = os.fspath(path)
    errors: list[ConfigError] = []
    try:
        text = read_config_text(file)
        base = _base_dir(base_dir)
        _load_text(text, file=file, path=None, base=base, errors=errors)
    except ConfigError as exc:  # unreadable, not TOML, or an error without a fallback
        errors.append(exc)
    return list({str(exc): exc for exc in errors}.values())  # a fallback may repeat one


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


# --------------------------------------------------------------------------- loading


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


def _load_text(
    text: str,
    *,
    file: str,
    path: str | None,
    base: str,
    errors: list[ConfigError] | None = None,
) -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", toml_reason(exc)) from None
    return _build(_merge(_default_tables(), raw), _Ctx(file, base, errors), path)
