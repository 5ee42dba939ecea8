"""The publisher's loop against a recording stand-in for a transport Producer (no broker)."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import riverflow.producers.publisher as publisher_module
from riverflow.errors import BrokerError, ConfigError, RiverflowError
from riverflow.lifecycle import Stopper
from riverflow.producers.events import Outgoing
from riverflow.producers.progress import Progress
from riverflow.producers.publisher import DelayUnit, Publisher
from riverflow.settings import load_settings
from riverflow.transport.base import DeliveryCallback
from riverflow.transport.errors import Timeout, TransportError

SETTINGS = load_settings(readings_topic="r", feedback_topic="f")


class Recorder:
    """A stand-in for a transport Producer that records (topic, key, value, monotonic time) and
    settles each send at once; refuses the messages named in ``refuse``."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.sent: list[tuple[str, bytes, dict[str, Any], float]] = []
        self.refuse = refuse or set()
        self.flushed = self.closed = False

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Any = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        assert value is not None and key is not None and on_delivery is not None
        decoded = json.loads(value)
        self.sent.append((topic, key, decoded, time.monotonic()))
        bad = decoded["event_id"] in self.refuse
        on_delivery(TransportError("broker said no") if bad else None)

    def flush(self, timeout_s: float) -> int:
        self.flushed = True
        return 0

    def connected(self) -> bool:
        return True

    def close(self, timeout_s: float) -> None:
        self.closed = True

    def order(self) -> list[str]:
        return [f"{topic}:{value['event_id']}" for topic, _, value, _ in self.sent]


def events(
    n: int, delay: float = 0.0, labelled: Callable[[int], bool] = lambda i: True
) -> Iterator[Outgoing]:
    for i in range(n):
        yield Outgoing(
            event_id=f"e{i}",
            sensor_id=f"s{i % 3}",
            features={"x": float(i)},
            label=i % 2 if labelled(i) else None,
            label_delay=delay,
        )


def publisher(
    recorder: Recorder,
    unit: DelayUnit = "seconds",
    rate: float = 0.0,
    stopper: Stopper | None = None,
) -> tuple[Publisher, io.StringIO]:
    out = io.StringIO()
    pub = Publisher(
        SETTINGS,
        name="test",
        rate=rate,
        delay_unit=unit,
        stopper=stopper,
        producer=recorder,
        progress=Progress("test", stream=out),
    )
    return pub, out


def test_messages_follow_the_contract_and_are_keyed_by_sensor() -> None:
    rec = Recorder()
    pub, out = publisher(rec)
    pub.run(events(4, labelled=lambda i: i != 2))
    readings = [s for s in rec.sent if s[0] == "r"]
    feedback = [s for s in rec.sent if s[0] == "f"]
    assert [v["event_id"] for _, _, v, _ in readings] == ["e0", "e1", "e2", "e3"]
    assert sorted(v["event_id"] for _, _, v, _ in feedback) == ["e0", "e1", "e3"]
    for _, key, value, _ in readings:
        assert set(value) == {"event_id", "sensor_id", "ts", "features"}
        assert key == value["sensor_id"].encode() and isinstance(value["ts"], int)
    for _, key, value, _ in feedback:
        assert set(value) == {"event_id", "sensor_id", "ts", "label"}
        assert (
            key == value["sensor_id"].encode() and value["label"] == int(value["event_id"][1]) % 2
        )
    assert rec.flushed and rec.closed
    assert "sent 4 readings and 3 labels" in out.getvalue().splitlines()[-1]


def test_delay_in_readings_zero_sends_each_label_before_the_next_reading() -> None:
    rec = Recorder()
    publisher(rec, unit="readings")[0].run(events(3, delay=0))
    assert rec.order() == ["r:e0", "f:e0", "r:e1", "f:e1", "r:e2", "f:e2"]


def test_delay_in_readings_n_waits_for_n_more_readings_and_the_end_flushes_the_rest() -> None:
    rec = Recorder()
    pub, _ = publisher(rec, unit="readings")
    report = pub.run(events(4, delay=2))
    assert rec.order() == ["r:e0", "r:e1", "r:e2", "f:e0", "r:e3", "f:e1", "f:e2", "f:e3"]
    assert report.early_labels == 0  # the source ended: the last labels were due


def test_a_bounded_run_waits_until_every_label_is_due() -> None:
    rec = Recorder()
    report = publisher(rec)[0].run(events(5, delay=0.2))
    sent_at = {(t, v["event_id"]): at for t, _, v, at in rec.sent}
    assert report.labels == 5 and report.early_labels == 0
    for i in range(5):
        assert sent_at[("f", f"e{i}")] - sent_at[("r", f"e{i}")] >= 0.2


def stops_after(n: int, stopper: Stopper, source: Iterator[Outgoing]) -> Iterator[Outgoing]:
    for i, event in enumerate(source):
        if i == n:
            stopper.stop("SIGTERM")
        yield event


def test_a_stop_sends_owed_labels_early_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    stopper = Stopper()
    pub, out = publisher(rec, stopper=stopper)
    started = time.monotonic()
    report = pub.run(stops_after(3, stopper, events(100, delay=60)))
    assert time.monotonic() - started < 5  # did not wait a minute for the labels
    assert report.interrupted == "SIGTERM"
    assert report.readings == 4  # the event in hand when the stop came is sent too
    assert sorted(v["event_id"] for t, _, v, _ in rec.sent if t == "f") == ["e0", "e1", "e2", "e3"]
    assert report.early_labels == 4
    assert "sending 4 labels before their delay has passed" in caplog.text
    assert "4 labels sent early, stopped by SIGTERM" in out.getvalue()


def test_a_source_error_still_sends_the_labels_owed() -> None:
    def broken() -> Iterator[Outgoing]:
        yield from events(2, delay=60)
        raise ConfigError("data.csv line 4: 2 fields, the header has 3")

    rec = Recorder()
    with pytest.raises(ConfigError, match="line 4"):
        publisher(rec)[0].run(broken())
    assert sorted(v["event_id"] for t, _, v, _ in rec.sent if t == "f") == ["e0", "e1"]
    assert rec.flushed and rec.closed


def test_messages_kafka_refuses_fail_the_run() -> None:
    rec = Recorder(refuse={"e1"})
    pub, out = publisher(rec)
    with pytest.raises(RiverflowError, match="refused 2 messages"):
        pub.run(events(3))
    assert "2 refused by Kafka" in out.getvalue()


def test_progress_prints_plain_lines_when_not_a_terminal() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = Progress("sim", stream=out, clock=lambda: now[0])
    progress.update(10, 5, 5)  # too soon: nothing
    now[0] = 20.0
    progress.update(4000, 3000, 1000)
    progress.finish("done")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("sim: 4,000 readings (200/s now, 200/s avg), 3,000 labels sent")
    assert lines[1] == "done" and "\r" not in out.getvalue()


# -- a broker that is away -------------------------------------------------------------------


class Away(Recorder):
    """A broker that is away: the first ``send_timeouts`` sends time out waiting for metadata,
    the records of the first send of each event id in ``expire`` expire in the producer, and
    nothing is confirmed until :meth:`come_back`."""

    def __init__(self, send_timeouts: int = 0, expire: set[str] | None = None) -> None:
        super().__init__()
        self.send_timeouts = send_timeouts
        self.expire = expire or set()
        self.pending: list[DeliveryCallback] = []
        self.lock = threading.Lock()
        self.back = threading.Event()

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Any = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        assert value is not None and key is not None and on_delivery is not None
        if self.send_timeouts:
            self.send_timeouts -= 1
            raise Timeout("Failed to update metadata after 5.0 secs.")
        event_id = json.loads(value)["event_id"]
        self.sent.append((topic, key, json.loads(value), time.monotonic()))
        if event_id in self.expire:
            self.expire.discard(event_id)
            on_delivery(Timeout("Expiring 1 record(s): delivery timeout"))
            return
        with self.lock:
            self.pending.append(on_delivery)
        if self.back.is_set():
            self.come_back()

    def come_back(self) -> None:
        """Delivers what waits, as a client's thread would once the broker is back."""
        self.back.set()
        with self.lock:
            pending, self.pending = self.pending, []
        for on_delivery in pending:
            on_delivery(None)

    def flush(self, timeout_s: float) -> int:
        if self.pending and not self.back.wait(min(timeout_s, 0.05)):
            return len(self.pending)
        self.come_back()
        self.flushed = True
        return 0


def test_sends_that_time_out_are_tried_again_and_expired_records_are_sent_again() -> None:
    rec = Away(send_timeouts=2, expire={"e1"})
    rec.back.set()
    report = publisher(rec)[0].run(events(3))
    assert report.readings == 3 and report.labels == 3 and report.failed == 0
    readings = [v["event_id"] for t, _, v, _ in rec.sent if t == "r"]
    assert sorted(readings) == ["e0", "e1", "e1", "e2"]  # e1 expired once, went again


def test_the_source_pauses_while_too_many_records_wait_for_the_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publisher_module, "MAX_WAITING", 5)
    rec = Away()
    seen: list[int] = []

    def broker_returns() -> None:
        deadline = time.monotonic() + 30
        while len(rec.sent) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(len(rec.sent))
        rec.come_back()

    thread = threading.Thread(target=broker_returns)
    thread.start()
    report = publisher(rec)[0].run(events(20, delay=2.0))  # as fast as it can
    thread.join()
    assert seen == [5]  # five readings (their labels not due yet), then nothing until it was back
    assert report.readings == 20 and report.labels == 20


def test_a_stop_while_the_broker_is_away_gives_up_after_the_timeout_and_says_so() -> None:
    rec = Away()
    stopper = Stopper()
    settings = SETTINGS.model_copy(update={"shutdown_timeout_s": 0.3})
    pub = Publisher(
        settings,
        name="test",
        rate=0,
        stopper=stopper,
        producer=rec,
        progress=Progress("test", stream=io.StringIO()),
    )
    with pytest.raises(BrokerError, match="8 messages were not delivered"):
        pub.run(stops_after(3, stopper, events(10, delay=60)))
    assert pub.report.undelivered == 8 and pub.report.failed == 0  # 4 readings, 4 labels
    assert rec.closed
