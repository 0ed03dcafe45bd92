"""The Kafka adapter's edge without Kafka (in-memory doubles): an exception on one message
dead-letters that message only, dead letters are confirmed before the source is acknowledged,
cut to fit when too large, and a single event over ``events.max_bytes`` is refused."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

import monitor.dead_letters
from alerting.types import Transition
from monitor.config import settings_from_mapping
from monitor.dead_letters import DeadLetterTooLargeError
from monitor.fastdecode import FastDecoder
from monitor.guard import ErrorLog
from monitor.kafka_adapter import KafkaAdapter
from monitor.pipeline import Pipeline
from monitor.scenarios.simulate import generate
from tests.doubles import Msg

TOPIC = "predictions"
SETTINGS: dict[str, Any] = {
    "window": {"size": 500},
    "reference": {"warmup_events": 2000},
    "alerts": {"FeatureDrift": {"for": "10s"}},
}


@dataclass
class Letter:
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


class Harness:
    """A real pipeline and adapter; dead letters, acks and alerts recorded in order."""

    def __init__(self, settings: dict[str, Any] | None = None, max_bytes: int = 16 << 20) -> None:
        self.pipeline = Pipeline(settings_from_mapping(settings or SETTINGS), checkpointing=True)
        self.letters: list[Letter] = []
        self.acked: list[int] = []
        self.log: list[tuple[str, int]] = []  # ("letter", offset) / ("ack", offset)
        self.alerts: list[Transition] = []
        self.send: Callable[[bytes | None, bytes, list[tuple[str, bytes]]], Any] | None = None
        harness = self

        class Sink:
            def send(self, transitions: list[Transition]) -> None:
                harness.alerts.extend(transitions)

            def close(self) -> None:
                pass

        async def dead_letter(
            key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
        ) -> Awaitable[Any] | None:
            if self.send is not None:
                return await self.send(key, value, headers)  # type: ignore[no-any-return]
            self.written(key, value, headers)
            return None

        self.adapter = KafkaAdapter(self.pipeline, {}, dead_letter, [Sink()], max_bytes)

    def written(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        h = dict(headers)
        self.letters.append(Letter(key, value, h))
        self.log.append(("letter", int(h["driftwatch-source-offset"])))

    def ack(self, m: Msg) -> Callable[[], None]:
        def done() -> None:
            self.acked.append(m.offset)
            self.log.append(("ack", m.offset))

        return done

    def run(self, messages: Sequence[Msg], batch: int = 0) -> None:
        async def feed() -> None:
            for k, m in enumerate(messages):
                if not batch:
                    await self.adapter.handle(m, m.value, self.ack(m))
                elif self.adapter.add(m, m.value, self.ack(m)) or k % batch == batch - 1:
                    await self.adapter.flush()
            await self.adapter.flush()

        asyncio.run(feed())


def two_streams(n: int) -> list[Msg]:
    """``n`` single-event messages of one partition: even offsets a drifting ``fraud`` stream,
    odd offsets a steady ``churn`` stream."""
    fraud = list(generate("abrupt-shift", n // 2, 5).lines())
    churn = [
        raw.replace(b'"model":"fraud"', b'"model":"churn"').replace(b'"e-', b'"c-')
        for raw in generate("steady", n // 2, 6).lines()
    ]
    out = []
    for k in range(n):
        raw = (fraud if k % 2 == 0 else churn)[k // 2].rstrip(b"\n")
        out.append(Msg(TOPIC, 0, k, b"m", raw))
    return out


def fraud_alerts(alerts: list[Transition]) -> list[tuple[str, int]]:
    return [(t.state.value, t.offset) for t in alerts if t.labels["model"] == "fraud"]


def test_a_pipeline_exception_dead_letters_only_its_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The batch that holds the poison also closes a drifting window of another stream before
    the pipeline raises: nothing is lost (that window's alert), applied twice (the other
    stream's events) or counted twice, and the worker goes on."""
    messages = two_streams(12_000)
    clean = Harness()
    clean.run([m for m in messages], batch=50)
    firing = [o for s, o in fraud_alerts(clean.alerts) if s == "firing"]
    assert firing, "the fraud stream must fire"
    poison = firing[0] + 1  # a churn message in the same batch, after the firing window
    assert poison % 2 == 1 and poison // 50 == firing[0] // 50
    poison_id = orjson.loads(messages[poison].value)["event_id"]
    original = Pipeline._stream_predictions

    def exploding(self: Pipeline, key: Any, events: Any, *args: Any) -> None:
        if key[0] == "churn" and any(e.event_id == poison_id for e in events):
            raise RuntimeError("boom")
        original(self, key, events, *args)

    monkeypatch.setattr(Pipeline, "_stream_predictions", exploding)
    h = Harness()
    with caplog.at_level(logging.ERROR, "driftwatch.worker"):
        h.run(messages, batch=50)

    assert len(h.letters) == 1
    letter = h.letters[0]
    assert letter.value == messages[poison].value
    assert letter.headers["driftwatch-reason"] == b"internal_error"
    assert letter.headers["driftwatch-exception"] == b"RuntimeError"
    assert letter.headers["driftwatch-source-offset"] == str(poison).encode()
    s = h.pipeline.stats
    assert s.lines == len(messages)
    assert s.accepted == len(messages) - 1
    assert dict(s.rejected) == {"internal_error": 1}
    status = h.adapter.status()
    assert status["events_by_stream"] == {"fraud/v1": 6000, "churn/v1": 5999}
    assert status["internal_errors"] == 1 and status["dead_letters"] == 1
    assert fraud_alerts(h.alerts) == fraud_alerts(clean.alerts)
    assert h.log.index(("letter", poison)) < h.log.index(("ack", poison))
    # In order, each once; the churn stream, one event short, keeps its last window open.
    assert clean.acked == list(range(len(messages)))
    assert h.acked == list(range(len(h.acked))) and len(h.acked) > len(messages) - 2 * 500
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None  # once, with the traceback


def poison_decoder(monkeypatch: pytest.MonkeyPatch, marker: bytes) -> None:
    """The fast decoder raises RecursionError on any message holding ``marker``."""
    many, one = FastDecoder.messages, FastDecoder.message

    def messages(self: FastDecoder, raws: Sequence[bytes], max_bytes: int) -> Any:
        if any(marker in r for r in raws):
            raise RecursionError("maximum recursion depth exceeded")
        return many(self, raws, max_bytes)

    def message(self: FastDecoder, raw: bytes) -> Any:
        if marker in raw:
            raise RecursionError("maximum recursion depth exceeded")
        return one(self, raw)

    monkeypatch.setattr(FastDecoder, "messages", messages)
    monkeypatch.setattr(FastDecoder, "message", message)


@pytest.mark.parametrize("batch", [0, 7])
def test_a_decoder_exception_dead_letters_only_its_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, batch: int
) -> None:
    poison_decoder(monkeypatch, b'"e-13"')
    lines = [raw.rstrip(b"\n") for raw in generate("steady", 2100, 1).lines()]
    messages = [Msg(TOPIC, 0, k, b"fraud", raw) for k, raw in enumerate(lines)]
    h = Harness()
    with caplog.at_level(logging.ERROR, "driftwatch.worker"):
        h.run(messages, batch=batch)
    got = [(x.headers["driftwatch-reason"], x.headers["driftwatch-exception"]) for x in h.letters]
    assert got == [(b"internal_error", b"RecursionError")]
    assert h.letters[0].value == lines[13]
    assert h.pipeline.stats.accepted == 2099
    assert dict(h.pipeline.stats.rejected) == {"internal_error": 1}
    # The warm-up's checkpoint (its 2,000th event, offset 2000) acknowledges all before it.
    assert h.acked == list(range(2001))
    assert len([r for r in caplog.records if r.exc_info]) == 1


def test_a_message_gets_its_dead_letters_or_one_internal_error_never_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An envelope with a rejected element whose valid events make the pipeline raise: one
    dead letter, the whole message, as ``internal_error``; counted once."""
    good = [raw.rstrip(b"\n") for raw in generate("steady", 3, 1).lines()]
    envelope = b'{"events":[' + good[0] + b',{"event_id":"x","timestamp":"soon"}]}'
    monkeypatch.setattr(
        Pipeline, "process_event", lambda *a, **k: (_ for _ in ()).throw(KeyError("k"))
    )
    monkeypatch.setattr(
        Pipeline, "_predictions", lambda *a, **k: (_ for _ in ()).throw(KeyError("k"))
    )
    h = Harness()
    h.run([Msg(TOPIC, 0, 0, b"fraud", envelope), Msg(TOPIC, 0, 1, b"fraud", good[1])])
    assert [x.headers["driftwatch-reason"] for x in h.letters] == [b"internal_error"] * 2
    assert h.letters[0].value == envelope
    assert "driftwatch-envelope-index" not in h.letters[0].headers
    assert dict(h.pipeline.stats.rejected) == {"internal_error": 2}
    assert h.pipeline.stats.lines == 2 and h.pipeline.stats.accepted == 0
    assert h.acked == [0, 1]


def test_internal_errors_are_logged_once_per_kind(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    poison_decoder(monkeypatch, b'"poison"')
    lines = [raw.rstrip(b"\n") for raw in generate("steady", 30, 1).lines()]
    messages = [
        Msg(TOPIC, 0, k, b"fraud", raw.replace(b'"fraud"', b'"poison"') if k % 3 else raw)
        for k, raw in enumerate(lines)
    ]
    h = Harness()
    with caplog.at_level(logging.ERROR, "driftwatch.worker"):
        h.run(messages, batch=10)
    assert len(h.letters) == 20 and h.adapter.stats.internal_errors == 20
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None


def test_a_failed_dead_letter_write_is_retried_and_the_source_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sending fails twice, then its delivery fails once: the message is acknowledged only
    after the third send was confirmed, the letter counted once, the failures three times."""
    monkeypatch.setattr(monitor.dead_letters, "RETRY_DELAYS", (0.0,))
    h = Harness()
    attempts: list[str] = []

    async def send(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> Any:
        attempts.append("send")
        if len(attempts) <= 2:
            raise ConnectionError("broker down")

        async def delivery() -> None:
            if attempts.count("send") == 3:
                raise TimeoutError("no ack from the broker")
            h.written(key, value, headers)

        return delivery()

    h.send = send
    h.run([Msg(TOPIC, 0, 0, b"k", b'{"oops')])
    assert attempts == ["send"] * 4
    assert h.log == [("letter", 0), ("ack", 0)]
    assert h.adapter.stats.dead_letters == 1
    assert h.adapter.stats.dead_letter_failures == 3
    assert h.adapter.status()["dead_letter_failures"] == 3


def test_a_dead_letter_too_large_for_kafka_is_cut_with_headers() -> None:
    """Kafka refuses more than 1,000 bytes: the letter is halved until it fits and says so."""
    h = Harness()

    async def send(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        if len(value) > 1000:
            raise DeadLetterTooLargeError("MESSAGE_TOO_LARGE")
        h.written(key, value, headers)

    h.send = send
    body = b'{"oops' + b"x" * 5000
    h.run([Msg(TOPIC, 0, 0, b"k", body)])
    (letter,) = h.letters
    assert letter.value == body[: len(letter.value)] and 500 < len(letter.value) <= 1000
    assert letter.headers["driftwatch-truncated"] == b"true"
    assert letter.headers["driftwatch-original-size"] == str(len(body)).encode()
    assert letter.headers["driftwatch-reason"] == b"malformed_json"
    assert h.adapter.stats.dead_letters_truncated == 1 and h.acked == [0]


def test_a_dead_letter_over_the_message_limit_is_cut_before_it_is_sent() -> None:
    h = Harness(max_bytes=20_000)
    body = b"y" * 30_000
    h.run([Msg(TOPIC, 0, 0, b"k", body)])
    (letter,) = h.letters
    assert letter.headers["driftwatch-reason"] == b"too_large"
    assert len(letter.value) == 20_000 - monitor.dead_letters.HEADROOM
    assert letter.headers["driftwatch-truncated"] == b"true"
    assert letter.headers["driftwatch-original-size"] == b"30000"


@pytest.mark.parametrize("batch", [0, 5])
@pytest.mark.parametrize("field", ["event_id", "whitespace", "category"])
def test_a_single_event_over_events_max_bytes_is_too_large(batch: int, field: str) -> None:
    """``events.max_bytes`` (1 MiB) holds for a message that is one event, whatever the
    larger ``kafka.max_message_bytes`` allows."""
    lines = [raw.rstrip(b"\n") for raw in generate("steady", 10, 1).lines()]
    ev = orjson.loads(lines[4])
    big = "z" * (2 << 20)
    if field == "event_id":
        ev["event_id"] = big
    elif field == "category":
        ev["features"]["country"] = big
    raw = orjson.dumps(ev) + (b" " * (2 << 20) if field == "whitespace" else b"")
    lines[4] = raw
    h = Harness()
    h.run([Msg(TOPIC, 0, k, b"fraud", v) for k, v in enumerate(lines)], batch=batch)
    assert [x.headers["driftwatch-reason"] for x in h.letters] == [b"too_large"]
    assert h.letters[0].headers["driftwatch-source-offset"] == b"4"
    assert h.pipeline.stats.accepted == 9
    assert dict(h.pipeline.stats.rejected) == {"too_large": 1}


def test_error_log_sums_up_repeats_without_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    log = ErrorLog(logging.getLogger("driftwatch.test"), interval=0.0)

    def fail(n: int) -> Exception:
        try:
            raise ValueError(f"bad {n}")
        except ValueError as exc:
            return exc

    with caplog.at_level(logging.ERROR, "driftwatch.test"):
        for n in range(3):
            log.report(fail(n), f"p/0@{n}")
    first, *rest = caplog.records
    assert first.exc_info is not None and "p/0@0" in first.getMessage()
    assert [r.exc_info for r in rest] == [None, None]
    assert "1 more inputs rejected as internal_error" in rest[0].getMessage()
    assert log.counts == {"ValueError": 3}


def test_a_version_that_never_finishes_warm_up_does_not_hold_acknowledgements() -> None:
    """``kafka.max_unacked_messages``: a stray model version's one event (offset 3) is written
    into its checkpoint once the partition holds too many messages, so offset 3 and everything
    after it are acknowledged as windows close; the unacknowledged count stays bounded."""
    settings = {**SETTINGS, "kafka": {"max_unacked_messages": 300}}
    h = Harness(settings)
    msgs = two_streams(6_000)
    stray = msgs[3].value.replace(b'"model_version":"v1"', b'"model_version":"canary"')
    msgs[3] = Msg(TOPIC, 0, 3, b"m", stray)
    table: dict[str, Any] = {}
    h.adapter.table = table
    most = 0

    async def feed() -> None:
        nonlocal most
        for m in msgs:
            if h.adapter.add(m, m.value, h.ack(m)):
                await h.adapter.flush()
                most = max(most, h.adapter.unacked())
        await h.adapter.flush()

    asyncio.run(feed())
    assert 3 in h.acked and h.acked == sorted(h.acked)
    assert most <= 300  # after every batch
    assert h.adapter.unacked() <= 300
    assert h.adapter.stats.collected_checkpoints > 0
    assert [ev["event_id"] for ev in table["churn/canary"]["collected"]] == ["c-1"]
    assert h.adapter.status()["collected_checkpoints"] == h.adapter.stats.collected_checkpoints


def test_drain_checkpoints_collected_events_and_acknowledges_everything() -> None:
    """A graceful stop: every message processed is acknowledged (their windows' collected
    events are in the checkpoints), so the final commit covers all of them."""
    h = Harness()
    table: dict[str, Any] = {}
    h.adapter.table = table
    msgs = two_streams(3_000)  # both streams in warm-up (2,000 each): nothing acknowledged
    msgs[7] = Msg(TOPIC, 0, 7, b"m", b'{"not": "an event"}')

    async def feed() -> int:
        for m in msgs:
            if h.adapter.add(m, m.value, h.ack(m)):
                await h.adapter.flush()
        assert h.adapter.buffered > 0  # the last batch is not flushed yet
        return await h.adapter.drain()

    assert asyncio.run(feed()) == 2
    assert h.acked == list(range(3_000)) and h.adapter.unacked() == 0
    assert len(table["fraud/v1"]["collected"]) == 1_500
    assert len(table["churn/v1"]["collected"]) == 1_499
    assert [letter.value for letter in h.letters] == [b'{"not": "an event"}']
