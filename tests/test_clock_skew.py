"""Event times a wrong clock sets are rejected as ``clock_skew`` (issue 14, defect 4): one event
can move no window and no ``for`` timer, in replay (against the input's watermark) and in the
worker (against the Kafka message timestamp). The pipeline is called directly, no I/O."""

from __future__ import annotations

import asyncio
from datetime import datetime

import orjson
import pytest

from alerting.types import Transition
from monitor.admission import EventClock
from monitor.config import settings_from_mapping
from monitor.kafka_adapter import KafkaAdapter
from monitor.pipeline import Pipeline
from monitor.scenarios.simulate import generate
from tests.doubles import Msg

FAR_FUTURE = "9999-12-31T23:59:59Z"
YEAR_ONE = "0001-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def drift_lines() -> list[bytes]:
    # FeatureDrift on credit_score: pending with the window of events 15,000-15,999, firing
    # 60 s of event time later (rate 100/s).
    return list(generate("abrupt-shift", 30_000, 5).lines())


def stamped(line: bytes, timestamp: str, event_id: str) -> bytes:
    ev = orjson.loads(line)
    ev["timestamp"] = timestamp
    ev["event_id"] = event_id
    return orjson.dumps(ev)


def seconds_of(line: bytes) -> float:
    ts = orjson.loads(line)["timestamp"]
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def run(p: Pipeline, lines: list[bytes], times: list[float] | None = None) -> list[Transition]:
    out: list[Transition] = []
    for k in range(0, len(lines), 1000):
        if times is None:  # replay: the watermark is the reference
            out += p.process_lines(lines[k : k + 1000], k, "input")
        else:
            out += p.process_lines(lines[k : k + 1000], k, "input", times=times[k : k + 1000])
    return out


def drift(out: list[Transition]) -> list[tuple[str, str | None, float]]:
    return [
        (t.state.value, t.labels.get("feature"), t.starts_at)
        for t in out
        if t.alertname == "FeatureDrift"
    ]


def test_one_far_future_event_does_not_hold_the_alert_pending(drift_lines: list[bytes]) -> None:
    baseline = drift(run(Pipeline(), drift_lines))
    firing = [t for t in baseline if t[0] == "firing"]
    assert [(state, feature) for state, feature, _ in firing] == [("firing", "credit_score")]
    assert firing[0][2] == pytest.approx(1767225819.99)
    # Inside the window that starts the pending alert: the window's time would be year 9999,
    # so would the alert's start, and no later window could reach its ``for``.
    lines = list(drift_lines)
    lines.insert(15_500, stamped(lines[15_500], FAR_FUTURE, "far"))
    p = Pipeline()
    assert drift(run(p, lines)) == baseline
    assert p.stats.rejected == {"clock_skew": 1}
    assert p.rejections[0].offset == 15_500
    assert "events.max_future_skew" in p.rejections[0].message


def test_against_kafka_timestamps(drift_lines: list[bytes]) -> None:
    """In the worker the message timestamp is the reference: the producer's clock was right,
    the event's field was not."""
    baseline = drift(run(Pipeline(), drift_lines))
    lines = list(drift_lines)
    times = [seconds_of(line) for line in lines]
    lines.insert(15_500, stamped(lines[15_500], FAR_FUTURE, "far"))
    times.insert(15_500, times[15_500])
    lines.insert(20_000, stamped(lines[20_000], YEAR_ONE, "old"))
    times.insert(20_000, times[20_000])
    p = Pipeline()
    assert drift(run(p, lines, times)) == baseline
    assert p.stats.rejected == {"clock_skew": 2}
    assert [r.offset for r in p.rejections] == [15_500, 20_000]


def test_year_one_is_rejected_and_changes_nothing(drift_lines: list[bytes]) -> None:
    baseline = drift(run(Pipeline(), drift_lines))
    lines = list(drift_lines)
    for at in (20_000, 9_000, 300):
        lines.insert(at, stamped(lines[at], YEAR_ONE, f"old-{at}"))
    p = Pipeline()
    assert drift(run(p, lines)) == baseline
    assert p.stats.rejected == {"clock_skew": 3}
    assert "events.max_age" in p.rejections[0].message


def test_first_line_of_a_replay_cannot_set_the_watermark(drift_lines: list[bytes]) -> None:
    baseline = drift(run(Pipeline(), drift_lines))
    lines = [stamped(drift_lines[0], FAR_FUTURE, "first"), *drift_lines]
    p = Pipeline()
    assert drift(run(p, lines)) == baseline
    assert p.stats.rejected == {"clock_skew": 1}
    assert p.rejections[0].offset == 0


def test_skew_limits_are_configurable(drift_lines: list[bytes]) -> None:
    settings = settings_from_mapping({"events": {"max_future_skew": "1h", "max_age": "2d"}})
    lines = list(drift_lines[:2000])  # from 2026-01-01T00:00:00Z, 100 events/s
    lines.insert(1000, stamped(lines[1000], "2026-01-01T00:50:00Z", "ahead-50m"))
    lines.insert(1001, stamped(lines[1001], "2025-12-30T12:00:00Z", "behind-36h"))
    lines.insert(1002, stamped(lines[1002], "2025-12-29T12:00:00Z", "behind-60h"))
    p = Pipeline(settings)
    run(p, lines)
    assert p.stats.rejected == {"clock_skew": 1}
    assert p.rejections[0].offset == 1002


class TestEventClock:
    """The watermark rules on plain numbers."""

    def test_backwards_within_max_age_passes_and_does_not_move_the_watermark(self) -> None:
        c = EventClock(300, 7 * 86400)
        assert c.judge([1000.0, 1001.0, 1001.0 - 6 * 86400, 1002.0], "s") == []
        assert c.watermark("s") == 1002.0

    def test_gap_moves_the_watermark_after_two_agreeing_events(self) -> None:
        c = EventClock(300, 7 * 86400)
        day = 86400.0
        assert c.judge([1000.0, 1001.0], "s") == []
        rejected = c.judge([1001.0 + day, 1002.0 + day, 1003.0 + day], "s")
        assert [k for k, _ in rejected] == [0]
        assert c.watermark("s") == 1003.0 + day
        assert c.latest == 1003.0 + day

    def test_one_outlier_then_normal_keeps_the_watermark(self) -> None:
        c = EventClock(300, 7 * 86400)
        assert c.judge([1000.0], "s") == []
        assert [k for k, _ in c.judge([1e12, 1001.0, 1e12, 1002.0], "s")] == [0, 2]
        assert c.watermark("s") == 1002.0

    def test_sources_have_their_own_watermarks(self) -> None:
        c = EventClock(300, 7 * 86400)
        assert c.judge([1000.0], "a") == []
        assert c.judge([5e6], "b") == []
        assert c.watermark("a") == 1000.0
        assert c.latest == 5e6

    def test_reference_times_are_absolute_bounds(self) -> None:
        c = EventClock(300, 7 * 86400)
        ref = 1_700_000_000.0
        seconds = [ref, ref + 299, ref + 301, ref - 7 * 86400 - 1, 253402300799.0]
        assert [k for k, _ in c.judge(seconds, "p", ref)] == [2, 3, 4]
        # Without a timestamp (NaN), the watermark the accepted events left is used.
        assert [k for k, _ in c.judge([ref + 600, ref + 100], "p", [float("nan")] * 2)] == [0]

    def test_long_runs_take_the_vector_path_with_the_same_verdict(self) -> None:
        c = EventClock(300, 7 * 86400)
        run = [1000.0 + k for k in range(100)]
        assert c.judge(run, "s") == []
        assert c.watermark("s") == 1099.0
        bad = [*run[:50], 1e12, *run[50:]]
        assert [k for k, _ in c.judge(bad, "s")] == [50]


def test_worker_dead_letters_skewed_events(drift_lines: list[bytes]) -> None:
    """In the worker each message's Kafka timestamp is the reference: a skewed event of an
    envelope is dead-lettered (reason, envelope index), its neighbours are processed; the
    dead letters are written before the pipeline processes the batch (and so before any ack)."""
    dead: list[tuple[bytes, dict[str, bytes]]] = []

    async def dead_letter(
        key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        dead.append((value, dict(headers)))

    pipeline = Pipeline(checkpointing=True)
    adapter = KafkaAdapter(pipeline, {}, dead_letter)
    events = [orjson.loads(line) for line in drift_lines[:10]]
    events[3]["timestamp"] = FAR_FUTURE
    single = stamped(drift_lines[10], YEAR_ONE, "old")
    now = seconds_of(drift_lines[0])
    messages = [
        Msg("predictions", 0, 0, b"fraud", orjson.dumps({"events": events}), timestamp=now),
        Msg("predictions", 0, 1, b"fraud", single, timestamp=now),
        Msg("predictions", 0, 2, b"fraud", drift_lines[11], timestamp=now),
    ]

    async def feed() -> None:
        for m in messages:
            adapter.add(m, m.value, lambda: None)
        await adapter.flush()

    asyncio.run(feed())
    reasons = [(h["driftwatch-reason"], h.get("driftwatch-envelope-index")) for _, h in dead]
    assert reasons == [(b"clock_skew", b"3"), (b"clock_skew", None)]
    assert orjson.loads(dead[0][0])["timestamp"] == FAR_FUTURE
    assert dead[1][0] == single
    assert pipeline.stats.rejected == {"clock_skew": 2}
    assert pipeline.stats.accepted == 10
    assert adapter.stats.dead_letters == 2
