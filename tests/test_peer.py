"""Kernel credentials on real sockets: SO_PEERCRED, SCM_CREDENTIALS, pidfd-verified /proc."""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from trio_logd.cgroup import cgroup_path, unit_names
from trio_logd.peer import (
    MAX_LABEL_BYTES,
    NO_ATTRIBUTION,
    SCM_CREDENTIALS_SPACE,
    SCM_SECURITY,
    Attribution,
    PeerCred,
    ProcessIdentity,
    creds_from_ancdata,
    datagram_writer,
    decode_label,
    decode_writer_key,
    lsm_labels,
    read_peer_cred,
    read_peer_groups,
    read_peer_label,
    read_process_identity,
    read_writer_identity,
)


def _own_attribution() -> Attribution:
    """What /proc says about this process, read directly."""
    with open("/proc/self/cgroup", "rb") as f:
        path = cgroup_path(f.read())
    audit = []
    for name in ("loginuid", "sessionid"):
        with open(f"/proc/self/{name}") as f:
            value = int(f.read())
        audit.append(None if value == 4294967295 else value)
    names = unit_names(path) if path is not None else unit_names("")
    return Attribution(path, *names, loginuid=audit[0], session=audit[1])


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A listening socket with SO_PASSCRED, a client, and the accepted server end."""
    path = str(tmp_path / "s.sock")
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    lst.bind(path)
    lst.listen()
    cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cli.connect(path)
    srv, _ = lst.accept()
    lst.close()
    yield cli, srv
    cli.close()
    srv.close()


def test_so_peercred_gives_our_own_identity(pair: tuple[socket.socket, socket.socket]) -> None:
    """Both ends see the other's pid/uid/gid: here, our own process."""
    cli, srv = pair
    me = PeerCred(os.getpid(), os.geteuid(), os.getegid())
    assert read_peer_cred(srv) == me
    assert read_peer_cred(cli) == me


def test_scm_credentials_arrive_with_every_read(pair: tuple[socket.socket, socket.socket]) -> None:
    """With SO_PASSCRED on the listener, even the first read carries the writer's credentials."""
    cli, srv = pair
    cli.sendall(b"hello")
    data, anc, _flags, _ = srv.recvmsg(100, SCM_CREDENTIALS_SPACE)
    assert data == b"hello"
    assert creds_from_ancdata(anc) == PeerCred(os.getpid(), os.geteuid(), os.getegid())


def test_no_ancillary_data_means_none() -> None:
    """An ancillary list without SCM_CREDENTIALS gives None."""
    assert creds_from_ancdata([]) is None
    assert creds_from_ancdata([(socket.SOL_SOCKET, socket.SCM_RIGHTS, b"\0\0\0\0")]) is None


def test_process_identity_is_read_through_a_pidfd(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """exe and comm of the peer (ourselves) come back verified; it is in our pid namespace."""
    _cli, srv = pair
    ident = read_process_identity(srv, os.getpid())
    with open("/proc/self/comm") as f:
        comm = f.read().strip()
    assert ident == ProcessIdentity(
        os.path.realpath(sys.executable), comm, False, _own_attribution()
    )


def test_process_identity_of_an_unknown_pid_is_left_out(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """pid 0 (another pid namespace) gives no exe/comm rather than a guess."""
    _cli, srv = pair
    assert read_process_identity(srv, 0) == ProcessIdentity(None, None)


def test_process_identity_of_a_dead_peer_is_left_out(tmp_path: Path) -> None:
    """A peer that exited before we looked: nothing is guessed from a recycled pid."""
    path = str(tmp_path / "s.sock")
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(path)
    lst.listen()
    pid = os.fork()
    if pid == 0:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path)
        os._exit(0)
    os.waitpid(pid, 0)
    srv, _ = lst.accept()
    try:
        assert read_peer_cred(srv).pid == pid
        assert read_process_identity(srv, pid) == ProcessIdentity(None, None)
    finally:
        srv.close()
        lst.close()


def test_writer_identity_is_verified() -> None:
    """A live writer's attribution is read; a dead one's, or a pid with another uid, is not."""
    me = PeerCred(os.getpid(), os.getuid(), os.getgid())
    assert read_writer_identity(me) == ProcessIdentity(None, None, False, _own_attribution())
    other_uid = PeerCred(os.getpid(), os.getuid() + 12345, os.getgid())
    assert read_writer_identity(other_uid) == ProcessIdentity(None, None)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert read_writer_identity(PeerCred(pid, os.getuid(), os.getgid())) == ProcessIdentity(
        None, None
    )
    assert read_writer_identity(PeerCred(0, 0, 0)) == ProcessIdentity(None, None)


def test_attribution_fields_leave_out_unknowns() -> None:
    """Attribution.fields names only what is known, by the record's keys."""
    assert NO_ATTRIBUTION.fields() == {}
    a = Attribution("/system.slice/a.service", "a.service", "system.slice", loginuid=0)
    assert a.fields() == {
        "cgroup": "/system.slice/a.service",
        "unit": "a.service",
        "slice": "system.slice",
        "loginuid": 0,
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b"unconfined_u:unconfined_r:unconfined_t:s0\0",
            "unconfined_u:unconfined_r:unconfined_t:s0",
        ),
        (b"/usr/bin/foo (enforce)", "/usr/bin/foo (enforce)"),
        (b"", None),
        (b"\0", None),
        (b"a\xffb\0junk", "a\ufffdb"),
        (b"x" * 4096, None),
    ],
)
def test_decode_label(raw: bytes, expected: str | None) -> None:
    """A label ends at its NUL, keeps invalid UTF-8 replaced; empty or huge gives none."""
    assert decode_label(raw) == expected


def test_peer_groups_come_from_the_kernel(pair: tuple[socket.socket, socket.socket]) -> None:
    """SO_PEERGROUPS lists our supplementary groups."""
    _cli, srv = pair
    assert sorted(read_peer_groups(srv)) == sorted(os.getgroups())


_CREDS = struct.pack("iII", 4242, 1000, 100)
_SOL = socket.SOL_SOCKET


@pytest.mark.parametrize(
    ("ancdata", "key", "fds"),
    [
        ([(_SOL, socket.SCM_CREDENTIALS, _CREDS)], _CREDS, []),
        (
            [(_SOL, socket.SCM_CREDENTIALS, _CREDS), (_SOL, SCM_SECURITY, b"lbl\0")],
            _CREDS + b"lbl\0",
            [],
        ),
        (
            [
                (_SOL, socket.SCM_CREDENTIALS, _CREDS),
                (_SOL, SCM_SECURITY, b"lbl\0"),
                (_SOL, socket.SCM_RIGHTS, struct.pack("3i", 7, 8, 9)),
            ],
            _CREDS + b"lbl\0",
            [7, 8, 9],
        ),
        # a cut SCM_RIGHTS (MSG_CTRUNC): whole ints only
        (
            [
                (_SOL, socket.SCM_CREDENTIALS, _CREDS),
                (_SOL, socket.SCM_RIGHTS, b"\x07\0\0\0\x08\0"),
            ],
            _CREDS,
            [7],
        ),
        # no credentials: an unknown writer, its label not kept, its fds still closed
        ([(_SOL, SCM_SECURITY, b"lbl"), (_SOL, socket.SCM_RIGHTS, struct.pack("i", 5))], b"", [5]),
        ([(socket.SOL_IP, socket.SCM_CREDENTIALS, _CREDS)], b"", []),
        ([], b"", []),
    ],
)
def test_datagram_writer_splits_ancillary_data(
    ancdata: list[tuple[int, int, bytes]], key: bytes, fds: list[int]
) -> None:
    """A datagram's ancillary list gives its writer's key (creds + label) and every fd to close."""
    assert datagram_writer(ancdata) == (key, fds)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        (b"", None),
        (b"\0", None),
        (b"system_u:system_r:syslogd_t:s0\0", "system_u:system_r:syslogd_t:s0"),
        (b"/usr/bin/app (enforce)", "/usr/bin/app (enforce)"),
        (b"x" * (MAX_LABEL_BYTES - 1), "x" * (MAX_LABEL_BYTES - 1)),
        (b"x" * MAX_LABEL_BYTES, None),  # as long as the room: cut by the kernel
        (b"\xff\xfeab", "\ufffd\ufffdab"),
    ],
)
def test_decode_writer_key_gives_creds_and_label(label: bytes, expected: str | None) -> None:
    """A writer key decodes to its credentials and label; an empty or cut label is left out."""
    assert decode_writer_key(_CREDS + label) == (PeerCred(4242, 1000, 100), expected)


def test_an_empty_writer_key_is_an_unknown_writer() -> None:
    """The key of a datagram without credentials decodes to nothing."""
    assert decode_writer_key(b"") == (None, None)


def test_same_creds_with_other_labels_are_other_writers() -> None:
    """One process whose label changed (or two labels on one pid) gets another key."""
    a, _ = datagram_writer([(_SOL, socket.SCM_CREDENTIALS, _CREDS), (_SOL, SCM_SECURITY, b"a")])
    b, _ = datagram_writer([(_SOL, socket.SCM_CREDENTIALS, _CREDS), (_SOL, SCM_SECURITY, b"b")])
    c, _ = datagram_writer([(_SOL, socket.SCM_CREDENTIALS, _CREDS)])
    assert len({a, b, c}) == 3


def test_the_label_is_asked_with_a_buffer_the_kernel_answers() -> None:
    """SO_PEERSEC with MAX_LABEL_BYTES reaches the kernel (Python refuses more than 1024
    bytes before the call): it answers a label, or ENOPROTOOPT without an LSM, and
    read_peer_label agrees with lsm_labels."""
    a, b = socket.socketpair()
    with a, b:
        raw: bytes | int | None
        try:
            raw = a.getsockopt(socket.SOL_SOCKET, socket.SO_PEERSEC, MAX_LABEL_BYTES)
        except OSError as exc:
            raw = exc.errno  # None: refused by Python, the kernel never asked
        if raw == errno.ENOPROTOOPT:
            assert lsm_labels() is False
            assert read_peer_label(a) is None
        else:
            assert isinstance(raw, bytes), raw
            assert lsm_labels() is True
            assert read_peer_label(a) == decode_label(raw)
