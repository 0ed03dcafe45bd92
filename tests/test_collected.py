"""Collected events in checkpoints: a model version that never finishes its warm-up (or fills
its window slowly) no longer holds its partition's acknowledgements, and a pipeline restarted
from such checkpoints decides exactly the alerts of one that never stopped."""

from __future__ import annotations

import math
from typing import Any

import pytest

from alerting.types import Transition
from monitor.app import CheckpointTable
from monitor.collected import decode_collected, encode_collected
from monitor.config import settings_from_mapping
from monitor.events import Rejection, parse_event
from monitor.pipeline import Pipeline
from monitor.scenarios.simulate import generate

SOURCE = "predictions/0"
CHUNK = 500
STRAY = (
    b'{"event_id":"stray-1","model":"fraud","model_version":"canary",'
    b'"timestamp":"2026-01-01T00:00:00.123456Z","features":{"amount":1e300,"country":"DE"},'
    b'"prediction":{"score":0.25,"label":"ok"},"latency_ms":3.5,"versions":{"code":"abc"}}'
)


def stream_lines(n: int = 30_000, stray_at: int | None = 100) -> list[bytes]:
    lines = list(generate("abrupt-shift", n, 5).lines())
    if stray_at is not None:
        lines[stray_at] = STRAY
    return lines


def feed(
    p: Pipeline,
    lines: list[bytes],
    start: int,
    stop: int,
    table: Any,
    limit: int | None = None,
) -> list[Transition]:
    """Feed lines [start, stop) a chunk at a time, checkpointing as the Kafka adapter does,
    and with ``limit`` keeping the unacknowledged input within it as the adapter does for
    ``kafka.max_unacked_messages`` (lines here are messages)."""
    out: list[Transition] = []
    for k in range(start, stop, CHUNK):
        end = min(k + CHUNK, stop)
        out += p.process_lines(lines[k:end], k, SOURCE)
        safe = p.safe_position(SOURCE)
        if limit is not None and safe is not None and end - safe > limit:
            assert p.checkpoint_collected(SOURCE, end - limit // 2) > 0
        for group, state in p.take_checkpoints().items():
            table[group] = state
    return out


def test_a_version_that_never_finishes_warm_up_held_the_partition_before() -> None:
    """What the fix is for: without collected checkpoints the stray event's position is the
    safe position for good."""
    lines = stream_lines()
    p = Pipeline(checkpointing=True)
    feed(p, lines, 0, len(lines), {})
    assert p.safe_position(SOURCE) == 100


@pytest.mark.parametrize("limit", [2_000, 10_000])
def test_the_safe_position_follows_the_stream_whatever_versions_appear(limit: int) -> None:
    lines = stream_lines()
    p = Pipeline(checkpointing=True)
    table = CheckpointTable({})
    lags = []
    for k in range(0, len(lines), CHUNK):
        feed(p, lines, k, k + CHUNK, table, limit)
        safe = p.safe_position(SOURCE)
        lags.append(0 if safe is None else k + CHUNK - safe)
    # Bounded by the limit plus the chunk that crossed it, at every step.
    assert max(lags) <= limit + CHUNK
    stray = table["fraud/canary"]
    assert stray["profile_id"] is None and len(stray["collected"]) == 1


@pytest.mark.parametrize("crash_at", [60, 3_100, 12_345, 26_500])
@pytest.mark.parametrize("limit", [700, 10_000])
def test_a_restart_from_collected_checkpoints_decides_the_same_alerts(
    crash_at: int, limit: int
) -> None:
    lines = stream_lines()
    straight = feed(Pipeline(checkpointing=True), lines, 0, len(lines), {})
    assert [t.state.value for t in straight if t.state.value == "firing"] == ["firing"]

    table = CheckpointTable({})  # through the worker's JSON encoding
    first = Pipeline(checkpointing=True)
    before = feed(first, lines, 0, crash_at, table, limit)
    safe = first.safe_position(SOURCE)
    resume = crash_at if safe is None else safe
    assert crash_at - resume <= limit + CHUNK
    second = Pipeline(checkpoints=table.get, checkpointing=True)
    after = feed(second, lines, resume, len(lines), table, limit)

    assert before + after == straight  # the same decisions, at the same offsets and times
    main = second.streams[("fraud", "v1")]
    assert main.events == 29_999  # every prediction counted once across the restart
    # The canary comes back with its next event, its first one still collected (from the
    # checkpoint, or re-delivered when the crash came before it).
    second.process_lines([STRAY.replace(b"stray-1", b"stray-2")], len(lines), SOURCE)
    stray = second.streams[("fraud", "canary")]
    ids = [ev["event_id"] for ev in stray.pending]
    assert stray.events == 2 and ids == ["stray-1", "stray-2"]


def test_collected_events_come_back_with_the_values_they_had() -> None:
    """NaN and infinities, microseconds, structured predictions, unknown fields, features
    events, and events of the compiled fast path (their features in a shared block)."""
    lines = [
        STRAY,
        b'{"event_id":"a","model":"m","model_version":"v","timestamp":1767225600123,'
        b'"features":{"x":NaN,"y":-Infinity,"z":Infinity,"n":null,"b":true,"s":"1.5"},'
        b'"prediction":0.5,"trace":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-'
        b'b7ad6b7169203331-01"},"extra":{"k":[1,2]}}',
        b'{"type":"feature","event_id":"f","model":"m","timestamp":"2026-01-01T01:02:03+02:00",'
        b'"features":{"x":1}}',
        b'{"event_id":"p","model":"m","model_version":"v","timestamp":"2026-01-01T00:00:00",'
        b'"features":{"x":2},"prediction":{"probabilities":{"a":0.25,"b":0.75}}}',
    ]
    events = [parse_event(raw) for raw in lines]
    assert not any(isinstance(ev, Rejection) for ev in events)
    table = CheckpointTable({})
    table["g"] = {"collected": encode_collected(events)}  # type: ignore[arg-type]
    back = decode_collected("g", table["g"]["collected"])
    assert len(back) == len(events)
    for got, want in zip(back, events, strict=True):
        assert got.keys() == want.keys()  # type: ignore[union-attr]
        for name in want:  # type: ignore[union-attr]
            a, b = got[name], want[name]  # type: ignore[literal-required, index]
            if name == "features":
                assert a.keys() == b.keys()
                for f in a:
                    if isinstance(b[f], float) and math.isnan(b[f]):
                        assert math.isnan(a[f])
                    else:
                        assert a[f] == b[f] and type(a[f]) is type(b[f]), f
            else:
                assert a == b and type(a) is type(b), name

    # A stream past its warm-up decodes with its compiled schema: rows of a shared block.
    p = Pipeline(
        settings_from_mapping({"window": {"size": 50}, "reference": {"warmup_events": 100}})
    )
    sim = list(generate("steady", 130, 3).lines())
    p.process_lines(sim, 0)
    fast = p.streams[("fraud", "v1")].pending
    assert len(fast) == 30 and type(fast[0]).__name__ == "FastPrediction"
    again = decode_collected("g", encode_collected(fast))
    assert again == [parse_event(raw) for raw in sim[100:]]


def test_collected_events_over_the_record_size_are_dropped_and_counted() -> None:
    p = Pipeline(checkpointing=True)
    p.max_collected_bytes = 10_000
    lines = list(generate("steady", 300, 3).lines())  # about 250 bytes each: over 10 KB
    p.process_lines(lines, 0, SOURCE)
    assert p.checkpoint_collected(SOURCE, 300) == 1
    state = p.take_checkpoints()["fraud/v1"]
    assert state is not None and "collected" not in state
    assert p.stats.warnings["collected_dropped"] == 300
    stream = p.streams[("fraud", "v1")]
    assert stream.pending == [] and p.safe_position(SOURCE) is None
    p.process_lines(list(generate("steady", 10, 4).lines()), 300, SOURCE)
    assert len(stream.pending) == 10  # the warm-up starts again


def test_streams_without_old_input_are_left_alone() -> None:
    p = Pipeline(checkpointing=True)
    p.process_lines(list(generate("steady", 300, 3).lines()), 1_000, SOURCE)
    assert p.checkpoint_collected(SOURCE, 1_000) == 0  # nothing from before 1,000
    assert p.checkpoint_collected("labels/0", 10**9) == 0  # nothing of that source
    assert p.take_checkpoints() == {}
    assert p.checkpoint_collected(SOURCE, 1_001) == 1
