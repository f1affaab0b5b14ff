"""cgroup.py: the v2 path of /proc/PID/cgroup, and the systemd names a path carries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_logd.cgroup import NO_NAMES, UnitNames, cgroup_path, unit_names, valid_unit_name

# --------------------------------------------------------------------------- cgroup_path

HYBRID = (
    b"12:pids:/user.slice/user-1000.slice\n"
    b"1:name=systemd:/user.slice/user-1000.slice/session-2.scope\n"
    b"0::/user.slice/user-1000.slice/session-2.scope\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"0::/system.slice/sshd.service\n", "/system.slice/sshd.service"),
        (b"0::/\n", "/"),
        (HYBRID, "/user.slice/user-1000.slice/session-2.scope"),
        (b"1:name=systemd:/\n9:memory:/x\n", None),  # cgroup v1 only
        (b"0::/system.slice/sshd.service", None),  # cut short: no line end
        (b"0::relative\n", None),
        (b"", None),
        (b"10::/not-v2\n", None),  # an ID that merely ends in 0
        (b"0::/a\xffb\n", "/a\ufffdb"),
    ],
)
def test_cgroup_path(text: bytes, expected: str | None) -> None:
    """The 0:: line's path, whatever else the file holds; None when it has none or was cut."""
    assert cgroup_path(text) == expected


# --------------------------------------------------------------------------- unit names


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/system.slice/sshd.service", UnitNames("sshd.service", "system.slice")),
        ("/system.slice/getty@tty1.service", UnitNames("getty@tty1.service", "system.slice")),
        ("/init.scope", UnitNames("init.scope", "-.slice")),
        (
            "/user.slice/user-1000.slice/session-2.scope",
            UnitNames("session-2.scope", "user-1000.slice"),
        ),
        (
            "/system.slice/system-postgresql.slice/postgresql@15-main.service",
            UnitNames("postgresql@15-main.service", "system-postgresql.slice"),
        ),
        # below the unit: a delegated service's own cgroups say nothing
        (
            "/system.slice/docker.service/evil.slice/sshd.service",
            UnitNames("docker.service", "system.slice"),
        ),
        ("/system.slice/foo.mount", UnitNames("foo.mount", "system.slice")),
        ("/system.slice/_cpu.service", UnitNames("cpu.service", "system.slice")),
        # a user's service manager: the names below are the user's own
        (
            "/user.slice/user-1000.slice/user@1000.service/app.slice/fake.service",
            UnitNames(user_unit="fake.service", user_slice="app.slice"),
        ),
        (
            "/user.slice/user-1000.slice/user@1000.service/init.scope",
            UnitNames(user_unit="init.scope", user_slice="-.slice"),
        ),
        (
            "/user.slice/user-1000.slice/user@1000.service/evil.slice/sshd.service",
            UnitNames(user_unit="sshd.service", user_slice="evil.slice"),
        ),
        (
            "/user.slice/user-1000.slice/user@1000.service/system.slice/sshd.service/x",
            UnitNames(user_unit="sshd.service", user_slice="system.slice"),
        ),
        # nested look-alike managers stay the user's
        (
            "/user.slice/user-1000.slice/user@1000.service/user@0.service/a.service",
            UnitNames(user_unit="user@0.service", user_slice="-.slice"),
        ),
        # a private test root that is a slice reads like the host's
        ("/t-1.slice/system.slice/demo.service", UnitNames("demo.service", "system.slice")),
    ],
)
def test_unit_names(path: str, expected: UnitNames) -> None:
    """systemd's naming: slices, then a unit; under user@UID.service only user_unit/user_slice."""
    assert unit_names(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "",
        "relative/sshd.service",
        "/system.slice",  # slices only
        "/system.slice/",
        "/docker/0123abcd",  # a container runtime's names
        "/machine.slice/libpod-abc.scope/../../system.slice/sshd.service",
        "/../system.slice/sshd.service",  # outside our cgroup namespace's root
        "/system.slice//sshd.service",
        "/system.slice/./sshd.service",
        "/system.slice/sshd",  # no type
        "/system.slice/sshd.bogus",
        "/system.slice/getty@.service",  # a template is not a running unit
        "/system.slice/@x.service",
        "/system.slice/a b.service",
        "/system.slice/sshd.service\n0::/x",
        "/system.slice/ss\ufffdhd.service",
        "/system.slice/sshd\u2028.service",
        "/system.slice/" + "a" * 248 + ".service",  # 256 characters: too long
        "/user.slice/user-1000.slice/user@1000.service",  # the manager, no unit below
        "/user.slice/user-1000.slice/user@1000.service/app.slice",
        "/user.slice/user-1000.slice/user@1000.service/../../../system.slice/sshd.service",
        "/evil.slice\n/system.slice/sshd.service",
    ],
)
def test_names_nothing(path: str) -> None:
    """A path with no unit where systemd would find one (or a hostile one) names nothing."""
    assert unit_names(path) == NO_NAMES


def test_user_look_alike_never_unit() -> None:
    """Every path through user@UID.service gives no unit, whatever the user named below."""
    base = "/user.slice/user-1000.slice/user@1000.service/"
    for tail in ("system.slice/sshd.service", "sshd.service", "a.slice/b.slice/nginx.service"):
        names = unit_names(base + tail)
        assert names.unit is None
        assert names.slice is None
        assert names.user_unit is not None


def test_long_path_names_read() -> None:
    """A very deep path is read in time and gives the unit at its top."""
    path = "/system.slice/x.service" + "/d" * 50_000
    assert unit_names(path) == UnitNames("x.service", "system.slice")
    many_slices = "/" + "/".join(["a.slice"] * 20_000) + "/u.service"
    assert unit_names(many_slices) == UnitNames("u.service", "a.slice")


def test_valid_unit_name_length() -> None:
    """255 characters is the longest valid unit name (systemd's UNIT_NAME_MAX)."""
    assert valid_unit_name("a" * 247 + ".service")
    assert not valid_unit_name("a" * 248 + ".service")


_PIECES = [*"ab.-_@:\\/\n \ufffd", "slice", ".service", "user@1000", ".scope", ".."]
_COMPONENT = st.lists(st.sampled_from(_PIECES), max_size=8).map("".join)


@given(st.lists(_COMPONENT, max_size=8))
def test_any_path_defined(components: list[str]) -> None:
    """Any path gives names or none, never an error; a unit never under user@UID.service."""
    path = "/" + "/".join(components)
    names = unit_names(path)
    assert isinstance(names, UnitNames)
    if names.unit is not None:
        assert valid_unit_name(names.unit)
        assert names.user_unit is None
        assert "\n" not in names.unit
    if names.user_unit is not None:
        assert names.unit is None
        assert "/user@" in path or path.startswith("/user@") or "/_user@" in path


@given(st.binary(max_size=200))
def test_any_proc_text_defined(text: bytes) -> None:
    """Any bytes as /proc/PID/cgroup give a path without a line end, or None."""
    path = cgroup_path(text)
    assert path is None or (path.startswith("/") and "\n" not in path)
