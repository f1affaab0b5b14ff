"""Names in a cgroup v2 path: the systemd unit and slice, or the user's own.

How this works (pure: no files, no I/O): :func:`cgroup_path` takes the text
of ``/proc/PID/cgroup`` and returns the path of its ``0::`` line (the cgroup
v2 hierarchy; on a hybrid host, that line among the v1 ones).
:func:`unit_names` reads the path by systemd's naming, as
``src/basic/cgroup-util.c`` does (``skip_slices``, ``cg_path_get_unit``,
``cg_path_get_slice``, ``skip_user_manager``), whether or not systemd runs
on the host:

* leading components that are valid ``*.slice`` unit names are slices; the
  next component, when it is a valid unit name and not a slice, is the unit
  (``system.slice/sshd.service`` names ``sshd.service`` in
  ``system.slice``; a unit directly under the root is in ``-.slice``);
* when that component is ``user@UID.service`` (a user's service manager),
  everything below it is the user's **delegated** subtree: the user creates
  and names those cgroups, so the names found there by the same rule are
  ``user_unit`` and ``user_slice`` and never ``unit``/``slice``: a user who
  names a cgroup ``evil.slice/sshd.service`` in her subtree gets
  ``user_unit = "sshd.service"`` and no ``unit``;
* components below the unit are not read: a service with ``Delegate=yes``
  may create any names there, and they say nothing about which unit it is.

A component that starts with ``_`` is unescaped as systemd's ``cg_escape``
escaped it (``_cpu.service`` is ``cpu.service``). A path with a ``..``
component (a writer outside the reader's cgroup namespace root), an empty
component, or a component that is not a valid unit name where one is
expected, names nothing. Unit names follow ``unit_name_is_valid``: at most
255 characters of ``[A-Za-z0-9:_.\\-]`` (``@`` once, before an instance), a
known unit type as the suffix.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

__all__ = ["MAX_CGROUP_BYTES", "UnitNames", "cgroup_path", "unit_names", "valid_unit_name"]

#: The longest cgroup path recorded (PATH_MAX): a deeper one is left out of
#: records (each of them would carry it), though its names are still read.
MAX_CGROUP_BYTES: Final = 4096
#: systemd's UNIT_NAME_MAX (256, with the NUL): the longest valid unit name.
_UNIT_NAME_MAX: Final = 255
#: Unit types (systemd ``unit_type_table``); a slice is never a unit here.
_UNIT_TYPES: Final = frozenset(
    {"service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path",
     "slice", "scope"}
)  # fmt: skip
#: ``prefix.type`` or ``prefix@instance.type`` with systemd's VALID_CHARS
#: (letters, digits, ``:-_.\``), ``@`` also allowed inside the instance.
_UNIT_NAME: Final = re.compile(
    r"(?P<prefix>[A-Za-z0-9:_.\\-]+)(?:@(?P<instance>[A-Za-z0-9:_.\\@-]+))?\.(?P<type>[a-z]+)"
)
#: A user's service manager: ``user@UID.service`` (the instance is the uid).
_USER_MANAGER: Final = re.compile(r"user@[0-9]+\.service")
#: The root slice, as systemd names it.
ROOT_SLICE: Final = "-.slice"


class UnitNames(NamedTuple):
    """The systemd names a cgroup path carries; each ``None`` when it names none."""

    unit: str | None = None
    slice: str | None = None
    user_unit: str | None = None
    user_slice: str | None = None


#: What a path that names nothing gives.
NO_NAMES: Final = UnitNames()


def cgroup_path(proc_cgroup: bytes) -> str | None:
    """Return the cgroup v2 path in the text of a ``/proc/PID/cgroup`` file.

    Args:
        proc_cgroup: the file's bytes (one ``ID:CONTROLLERS:PATH`` line per
            hierarchy; the v2 one is ``0::PATH``).

    Returns:
        The path (invalid UTF-8 replaced with U+FFFD), or ``None`` when
        there is no ``0::`` line (a cgroup v1 only host) or its path is not
        absolute (the file was cut short).
    """
    if proc_cgroup.startswith(b"0::"):
        start = 0
    else:
        start = proc_cgroup.find(b"\n0::") + 1
        if not start:
            return None
    end = proc_cgroup.find(b"\n", start)
    if end < 0:  # the kernel ends every line: a file cut short
        return None
    path = proc_cgroup[start + 3 : end]
    if not path.startswith(b"/"):
        return None
    return path.decode("utf-8", "replace")


def valid_unit_name(name: str) -> bool:
    """Whether *name* is a valid unit name (plain or instance, not a template)."""
    if len(name) > _UNIT_NAME_MAX:
        return False
    m = _UNIT_NAME.fullmatch(name)
    return m is not None and m["type"] in _UNIT_TYPES


def _unescape(component: str) -> str:
    # systemd's cg_unescape: cg_escape prefixed "_" to names that would
    # clash with the kernel's (cgroup.procs, cpu.max ...) or start with "_" or "."
    return component[1:] if component.startswith("_") else component


def _is_slice(component: str) -> bool:
    name = _unescape(component)
    return name.endswith(".slice") and "@" not in name and valid_unit_name(name)


def _unit_and_slice(parts: list[str]) -> tuple[str | None, str | None, int]:
    """Skip leading slices; return the unit after them, its slice, and the unit's index."""
    i = 0
    while i < len(parts) and _is_slice(parts[i]):
        i += 1
    if i == len(parts):
        return None, None, i
    unit = _unescape(parts[i])
    if not valid_unit_name(unit) or unit.endswith(".slice"):
        return None, None, i
    return unit, _unescape(parts[i - 1]) if i else ROOT_SLICE, i


def unit_names(path: str) -> UnitNames:
    """Read the systemd unit and slice (or the user's own) from a cgroup v2 path.

    Args:
        path: a cgroup path as ``cgroup_path`` returns it
            (``/system.slice/sshd.service``).

    Returns:
        ``unit``/``slice`` for a system unit; ``user_unit``/``user_slice``
        (and no ``unit``) under ``user@UID.service``; :data:`NO_NAMES` when
        the path names no unit (see the module doc).
    """
    parts = path.split("/")
    if parts[0] != "" or len(parts) < 2:
        return NO_NAMES
    parts = parts[1:]
    if parts[-1] == "":
        parts.pop()  # a trailing "/" (the root is "/")
    if not parts or "" in parts or ".." in parts or "." in parts:
        return NO_NAMES
    unit, slice_, i = _unit_and_slice(parts)
    if unit is None:
        return NO_NAMES
    if not _USER_MANAGER.fullmatch(unit):
        return UnitNames(unit, slice_)
    # below user@UID.service: the user's delegated subtree, the user's names
    user_unit, user_slice, _j = _unit_and_slice(parts[i + 1 :])
    if user_unit is None:
        return NO_NAMES
    return UnitNames(user_unit=user_unit, user_slice=user_slice)
