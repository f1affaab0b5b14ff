"""End to end: the client shim's APIs against a real daemon; records read back from disk."""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

import pytest
import structlog
import trio

from tests._daemon import DaemonProcess, world
from tests._uids import free_uids
from tests.client._fixtures import no_sender_thread_left  # noqa: F401  # autouse
from trio_logd.client import AsyncLogdClient, LogdClient, LogdHandler, LogdLoggerFactory

ROOT = os.geteuid()
#: A uid (and gid) without a passwd or group entry, found free on this host.
(SQUATTER,) = free_uids(1)
ME = os.getpid()


def claims(rec: dict[str, Any]) -> dict[str, Any]:
    """The sender's part of a record, without what varies from run to run."""
    keep = ("fac", "sev", "app", "msgid", "msg", "fields")
    return {k: rec[k] for k in keep if k in rec}


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A logger of its own, without handlers, not propagating to the root logger."""
    lg = logging.getLogger(f"test.{request.node.name}")
    lg.setLevel(logging.DEBUG)
    lg.propagate = False
    yield lg
    for h in list(lg.handlers):
        lg.removeHandler(h)
        h.close()


def test_handler_sends_severity_app_and_typed_extra_fields(
    daemon: DaemonProcess, logger: logging.Logger
) -> None:
    """Level → sev, logger name → app, extra={...} → fields with their JSON types."""
    handler = LogdHandler(daemon.socket)
    logger.addHandler(handler)

    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    extra = {"user": "bob", "n": 3, "ratio": 0.25, "ok": False, "none": None,
             "tags": ["a", 2], "nested": {"k": [1]}, "obj": Opaque()}  # fmt: skip
    logger.debug("d")
    logger.info("hello %s", "world", extra=extra)
    logger.warning("w")
    logger.error("e")
    logger.critical("c")
    logger.log(25, "between")
    handler.flush()
    recs = daemon.wait_records(ROOT, 6)
    app = logger.name[:48]  # RFC 5424's limit for APP-NAME
    assert [claims(r) for r in recs] == [
        {"fac": "user", "sev": "debug", "app": app, "msg": "d"},
        {"fac": "user", "sev": "info", "app": app, "msg": "hello world",
         "fields": {**extra, "obj": "opaque!"}},
        {"fac": "user", "sev": "warning", "app": app, "msg": "w"},
        {"fac": "user", "sev": "err", "app": app, "msg": "e"},
        {"fac": "user", "sev": "crit", "app": app, "msg": "c"},
        {"fac": "user", "sev": "notice", "app": app, "msg": "between"},
    ]  # fmt: skip
    assert {(r["uid"], r["pid"]) for r in recs} == {(ROOT, ME)}
    assert all("claimed_pid" not in r for r in recs)  # the header's pid is ours: not kept apart


def test_handler_sends_exceptions_with_their_traceback(
    daemon: DaemonProcess, logger: logging.Logger
) -> None:
    """logger.exception puts exc_type and the whole traceback in fields; msg stays one line."""
    logger.addHandler(LogdHandler(daemon.socket, location=True))
    table: dict[str, int] = {}
    try:
        table["missing"]
    except KeyError:
        logger.exception("lookup failed", extra={"key": "missing"})
    (rec,) = daemon.wait_records(ROOT, 1)
    fields = rec["fields"]
    assert (rec["sev"], rec["msg"], fields["key"], fields["exc_type"]) == (
        "err", "lookup failed", "missing", "KeyError",
    )  # fmt: skip
    tb = fields["exception"]
    assert tb.startswith("Traceback (most recent call last):\n")
    assert 'table["missing"]' in tb
    assert tb.endswith("KeyError: 'missing'")
    assert (fields["code_file"], fields["code_func"], fields["thread"]) == (
        __file__, "test_handler_sends_exceptions_with_their_traceback", "MainThread",
    )  # fmt: skip
    assert isinstance(fields["code_line"], int)


_BASIC_CONFIG = """
import logging, sys
from trio_logd.client import LogdHandler

logging.basicConfig(level=logging.INFO, handlers=[LogdHandler(sys.argv[1])])
log = logging.getLogger("shop.billing")
log.info("charged %s", "bob")
try:
    raise ValueError("card declined")
except ValueError:
    log.exception("declined")
"""


def test_basic_config_one_liner_stores_the_message_alone(daemon: DaemonProcess) -> None:
    """basicConfig(handlers=[LogdHandler()]) leaves msg the message: no level, name or traceback."""
    subprocess.run([sys.executable, "-c", _BASIC_CONFIG, daemon.socket], check=True, timeout=60)
    recs = daemon.wait_records(ROOT, 2)
    assert [(r["app"], r["sev"], r["msg"]) for r in recs] == [
        ("shop.billing", "info", "charged bob"),
        ("shop.billing", "err", "declined"),
    ]
    assert recs[1]["fields"]["exc_type"] == "ValueError"
    assert recs[1]["fields"]["exception"].endswith("ValueError: card declined")


def test_a_formatter_set_on_purpose_shapes_msg_but_not_the_traceback(
    daemon: DaemonProcess, logger: logging.Logger
) -> None:
    """setFormatter shapes msg; the traceback still goes to fields only."""
    handler = LogdHandler(daemon.socket)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    logger.addHandler(handler)
    try:
        raise KeyError("k")
    except KeyError:
        logger.exception("lookup %s", "failed")
    (rec,) = daemon.wait_records(ROOT, 1)
    assert rec["msg"] == "[ERROR] lookup failed"
    assert rec["fields"]["exc_type"] == "KeyError"


def test_structlog_event_dict_arrives_as_typed_fields(daemon: DaemonProcess) -> None:
    """structlog: `event` is the text, every other key a typed field; method → sev."""
    factory = LogdLoggerFactory(daemon.socket)
    log = structlog.wrap_logger(
        factory("billing"),
        processors=[structlog.processors.add_log_level],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    ).bind(request_id=42)
    log.info("charged", amount=12.5, items=[1, 2], customer={"id": 7, "vip": True})
    log.warning("slow", ms=812)
    try:
        raise ValueError("bad card")
    except ValueError:
        log.exception("declined")
    assert factory.client.flush()
    recs = daemon.wait_records(ROOT, 3)
    assert [claims(r) for r in recs[:2]] == [
        {"fac": "user", "sev": "info", "app": "billing", "msg": "charged",
         "fields": {"request_id": 42, "amount": 12.5, "items": [1, 2],
                    "customer": {"id": 7, "vip": True}, "level": "info"}},
        {"fac": "user", "sev": "warning", "app": "billing", "msg": "slow",
         "fields": {"request_id": 42, "ms": 812, "level": "warning"}},
    ]  # fmt: skip
    err = recs[2]
    assert (err["sev"], err["msg"], err["fields"]["exc_type"]) == ("err", "declined", "ValueError")
    assert err["fields"]["exception"].endswith("ValueError: bad card")
    factory.client.close()


def test_sync_client_emit_and_send(daemon: DaemonProcess) -> None:
    """LogdClient: emit queues, send waits until written; severity names and msgid kept."""
    with LogdClient(daemon.socket, app="direct", facility="local2") as client:
        assert client.emit("one", severity="warn", fields={"k": 1}, msgid="M1")
        assert client.send("two", severity=0)
        assert client.statistics().delivered == 2
    recs = daemon.wait_records(ROOT, 2)
    assert [claims(r) for r in recs] == [
        {"fac": "local2", "sev": "warning", "app": "direct", "msgid": "M1", "msg": "one",
         "fields": {"k": 1}},
        {"fac": "local2", "sev": "emerg", "app": "direct", "msg": "two"},
    ]  # fmt: skip


async def test_trio_client_sends_typed_fields(daemon: DaemonProcess) -> None:
    """AsyncLogdClient: emit and send (acknowledged) arrive with sev, app and fields."""
    async with AsyncLogdClient(daemon.socket, app="trio-app", ack=True) as log:
        assert log.emit("queued", fields={"n": 1})
        assert await log.send("stored", severity="err", fields={"ok": True})
        assert log.statistics().delivered == 2
    recs = await trio.to_thread.run_sync(daemon.wait_records, ROOT, 2)
    ids = [r["fields"].pop("delivery_id") for r in recs]
    assert [claims(r) for r in recs] == [
        {"fac": "user", "sev": "info", "app": "trio-app", "msg": "queued", "fields": {"n": 1}},
        {"fac": "user", "sev": "err", "app": "trio-app", "msg": "stored", "fields": {"ok": True}},
    ]  # fmt: skip
    assert [i.rsplit(":", 1)[1] for i in ids] == ["1", "2"]


def test_threads_share_one_handler_without_loss_or_duplicates(
    daemon: DaemonProcess, logger: logging.Logger
) -> None:
    """8 threads logging at once through one handler: every record exactly once."""
    handler = LogdHandler(daemon.socket)
    logger.addHandler(handler)

    def work(t: int) -> None:
        for i in range(250):
            logger.info("t", extra={"t": t, "i": i})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert handler.client.flush(10)
    recs = daemon.wait_records(ROOT, 2000)
    assert sorted((r["fields"]["t"], r["fields"]["i"]) for r in recs) == [
        (t, i) for t in range(8) for i in range(250)
    ]
    for t in range(8):  # one thread's records stay in its order
        mine = [r["fields"]["i"] for r in recs if r["fields"]["t"] == t]
        assert mine == list(range(250))


def test_a_forked_child_logs_on_its_own_connection(
    daemon: DaemonProcess, logger: logging.Logger
) -> None:
    """After fork the child has its own connection (its pid, no conn_pid) and client id."""
    handler = LogdHandler(daemon.socket, ack=True)
    logger.addHandler(handler)
    logger.info("parent before")  # maybe still queued at fork: the child must not send it
    child = os.fork()
    if child == 0:
        code = 1
        try:
            logger.info("child")
            code = 0 if handler.client.flush(10) else 2
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
    logger.info("parent after")
    assert handler.client.flush(10)
    recs = daemon.wait_records(ROOT, 3)
    assert sorted((r["msg"], r["pid"]) for r in recs) == [
        ("child", child), ("parent after", ME), ("parent before", ME),
    ]  # fmt: skip
    assert all("conn_pid" not in r for r in recs)
    ids = {r["msg"]: r["fields"]["delivery_id"].rsplit(":", 1) for r in recs}
    assert ids["parent before"][0] == ids["parent after"][0] != ids["child"][0]
    assert ids["child"][1] == "1"


def _next_count(reports: BinaryIO) -> int:
    """The squatter's next report, failing (not hanging) when none comes."""
    ready, _, _ = select.select([reports], [], [], 10)
    assert ready, "the squatter reported nothing for 10 s"
    return int(reports.readline())


def _squat(path: str, report: int) -> None:
    """Child: become uid SQUATTER, serve *path*, write each connection's byte count to *report*."""
    os.setgroups([])
    os.setgid(SQUATTER)
    os.setuid(SQUATTER)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(16)
    os.write(report, b"listening\n")
    while True:
        conn, _ = srv.accept()
        conn.settimeout(5)
        n = 0
        try:
            while chunk := conn.recv(65536):
                n += len(chunk)
        except OSError:
            pass
        conn.close()
        os.write(report, b"%d\n" % n)


def test_a_socket_served_by_another_uid_is_refused(
    as_root: None, logger: logging.Logger, capfd: pytest.CaptureFixture[str]
) -> None:
    """A process of another uid squatting the socket path gets no byte; stderr says so once."""
    with world() as root:
        run = root / "run"
        run.mkdir()
        run.chmod(0o1777)  # like /tmp: anyone may create a socket here; root owns it
        path = str(run / "log.sock")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                _squat(path, w)
            finally:
                os._exit(1)
        os.close(w)
        reports = os.fdopen(r, "rb", buffering=0)
        try:
            assert reports.readline() == b"listening\n"
            client = LogdClient(path, reconnect_max=0.05, timeout=0.2)
            logger.addHandler(LogdHandler(client=client))
            for i in range(5):
                logger.error("secret", extra={"i": i})
            counts = [_next_count(reports) for _ in range(3)]  # three attempts refused
            assert counts == [0, 0, 0]
            stats = client.statistics()
            assert (stats.connects, stats.delivered, stats.pending) == (0, 0, 5)
            assert stats.last_error == (
                f"{path}: served by uid {SQUATTER} (pid {pid}), expected uid {ROOT} "
                f"(the owner of {run}) or root: not sending records there"
            )
            assert client.flush() is False
            client.close(0)
            assert capfd.readouterr().err == f"trio-logd client: {stats.last_error}\n"
            # control: trusting that uid explicitly, the same socket does get the record
            with LogdClient(path, expected_uid=SQUATTER) as trusting:
                assert trusting.send("for the squatter")
            while (received := _next_count(reports)) == 0:  # more refused attempts may precede it
                pass
            assert received > 0
        finally:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            reports.close()


def test_send_ack_exit_codes() -> None:
    """`trio-logd send --ack` exits 0 once stored, 1 with the reason when nothing confirms."""
    with world() as root:
        d = DaemonProcess(root)
        out = subprocess.run(
            d.command("send", "--ack", "--timeout", "0.5", "lost"),
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 1
        assert out.stderr == (
            f"trio-logd send: {d.socket}: no such socket: is the daemon running? "
            f"(the path is [daemon] socket of {d.config})\n"
        )
        with d:
            out = subprocess.run(
                d.command("send", "--ack", "-t", "cli", "-p", "daemon.err", "kept"),
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert (out.returncode, out.stderr) == (0, "")
            (rec,) = d.records(ROOT)[-1:]  # stored before `send` returned: no waiting
            assert list(rec.pop("fields")) == ["delivery_id"]
            assert claims(rec) == {"fac": "daemon", "sev": "err", "app": "cli", "msg": "kept"}
            assert rec["pid"] != ME
