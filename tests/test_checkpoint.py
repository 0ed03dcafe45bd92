"""Checkpoints: a pipeline killed at any point and restarted from its checkpoints and the
last safe input position decides the same alerts as one that never stopped."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import pytest

from alerting.types import Transition
from monitor.app import CheckpointTable
from monitor.pipeline import Pipeline
from monitor.scenarios.simulate import generate

SOURCE = "predictions/0"


def feed(
    p: Pipeline, lines: list[bytes], start: int, stop: int, table: MutableMapping[str, Any]
) -> list[Transition]:
    """Feed lines [start, stop) one chunk at a time, checkpointing like the Kafka adapter."""
    out: list[Transition] = []
    for k in range(start, stop, 500):
        chunk = lines[k : min(k + 500, stop)]
        out += p.process_lines(chunk, k, SOURCE)
        for group, state in p.take_checkpoints().items():
            # Through JSON, as the changelog stores it (the worker's table encodes it itself).
            table[group] = (
                state if isinstance(table, CheckpointTable) else json.loads(json.dumps(state))
            )
    return out


def key(t: Transition) -> tuple[str, str, str]:
    return (t.state.value, t.alertname, t.labels.get("feature", ""))


@pytest.mark.parametrize("crash_at", [3_000, 12_345, 26_500])
@pytest.mark.parametrize("scenario", ["abrupt-shift", "accuracy-drop"])
def test_restart_from_checkpoint_is_equivalent(scenario: str, crash_at: int) -> None:
    lines = list(generate(scenario, 30_000, 5).lines())
    straight = feed(Pipeline(checkpointing=True), lines, 0, len(lines), {})

    table: dict[str, Any] = {}
    first = Pipeline(checkpointing=True)
    before = feed(first, lines, 0, crash_at, table)
    # Input before the safe position is in a checkpoint (or changed nothing); the rest is
    # re-delivered, as Kafka does from the last committed offset.
    safe = first.safe_position(SOURCE)
    resume = crash_at if safe is None else safe
    second = Pipeline(checkpoints=table.get, checkpointing=True)
    after = feed(second, lines, resume, len(lines), table)

    assert [key(t) for t in before + after if t.offset < crash_at or t.offset >= resume] == [
        key(t) for t in straight
    ] or sorted(map(key, before + after)) == sorted(map(key, straight))
    firing = [t for t in before + after if t.state.value == "firing"]
    assert len(firing) == len([t for t in straight if t.state.value == "firing"]) == 1
    stream = second.streams[("fraud", "v1")]
    assert stream.events == 30_000  # every prediction counted once across the restart
    if crash_at > 5_000:  # past the warm-up: the reference came from the checkpoint
        assert second.stats.restored == 1
        assert stream.profile is not None
        assert stream.profile.id == first.streams[("fraud", "v1")].profile.id  # type: ignore[union-attr]


def test_firing_alert_is_not_sent_again_after_restart() -> None:
    lines = list(generate("abrupt-shift", 30_000, 5).lines())
    table: dict[str, Any] = {}
    first = Pipeline(checkpointing=True)
    before = feed(first, lines, 0, 25_000, table)
    assert [t.state.value for t in before if t.alertname == "FeatureDrift"] == ["pending", "firing"]
    safe = first.safe_position(SOURCE)
    second = Pipeline(checkpoints=table.get, checkpointing=True)
    after = feed(second, lines, 25_000 if safe is None else safe, len(lines), table)
    assert [t for t in after if t.state.value in ("pending", "firing")] == []
    assert second.stats.duplicates == 0 or second.stats.duplicates < 1000
    assert [a.state.value for a in second.tracker.firing()] == ["firing"]


def test_a_partition_taken_away_and_given_back_resumes_from_its_newest_checkpoint() -> None:
    """Worker 1 loses the partition, worker 2 advances the stream's checkpoint, worker 1 gets
    it back: it rebuilds the stream from that checkpoint, not from its stale memory."""
    lines = list(generate("abrupt-shift", 30_000, 5).lines())
    straight = feed(Pipeline(checkpointing=True), lines, 0, len(lines), {})
    table: dict[str, Any] = {}
    one = Pipeline(checkpoints=table.get, checkpointing=True)
    out = feed(one, lines, 0, 12_345, table)
    moved_at = one.safe_position(SOURCE) or 12_345
    two = Pipeline(checkpoints=table.get, checkpointing=True)
    out += feed(two, lines, moved_at, 24_321, table)
    back_at = two.safe_position(SOURCE) or 24_321
    stale = one.streams[("fraud", "v1")]
    out += feed(one, lines, back_at, len(lines), table)
    stream = one.streams[("fraud", "v1")]
    assert stream is not stale and one.stats.stale == 1 and one.stats.restored == 1
    assert stream.events == 30_000 and stream.index == 0  # its slot, for the label join
    assert len(one._by_index) == 1 and one._by_index[0] is stream
    firing = [key(t) for t in out if t.state.value == "firing"]
    assert firing == [key(t) for t in straight if t.state.value == "firing"]
    # Its own checkpoints never make a stream stale.
    own: dict[str, Any] = {}
    again = Pipeline(checkpoints=own.get, checkpointing=True)
    feed(again, lines, 0, 9_000, own)
    assert own and again.stats.stale == 0 and again.streams[("fraud", "v1")].events == 9_000


def test_checkpoint_table_tells_its_own_checkpoints_from_another_workers() -> None:
    shared: dict[bytes, bytes] = {}  # the changelog-backed table both workers see
    mine, theirs = CheckpointTable(shared), CheckpointTable(shared)
    assert mine.foreign("m/v") is None
    mine["m/v"] = {"applied": {"p/0": 5}}
    assert mine.foreign("m/v") is None
    assert theirs.foreign("m/v") == {"applied": {"p/0": 5}} == mine["m/v"]
    theirs["m/v"] = {"applied": {"p/0": 9}}
    assert mine.foreign("m/v") == {"applied": {"p/0": 9}}
    assert theirs.foreign("m/v") is None
    mine["m/v"] = {"applied": {"p/0": 9}}  # the same bytes again: nobody else's any more
    assert mine.foreign("m/v") is None and theirs.foreign("m/v") is None
    del mine["m/v"]
    assert theirs.foreign("m/v") is None and "m/v" not in mine


def test_partition_given_back_through_the_workers_checkpoint_tables() -> None:
    """The rebalance case above with the worker's own table class on each side: a worker's
    own checkpoints are recognised without decoding them, another worker's are not."""
    lines = list(generate("abrupt-shift", 30_000, 5).lines())
    shared: dict[bytes, bytes] = {}
    tables = CheckpointTable(shared), CheckpointTable(shared)
    one, two = (
        Pipeline(checkpoints=t.get, foreign_checkpoints=t.foreign, checkpointing=True)
        for t in tables
    )
    feed(one, lines, 0, 12_345, tables[0])
    feed(two, lines, one.safe_position(SOURCE) or 12_345, 24_321, tables[1])
    stale = one.streams[("fraud", "v1")]
    feed(one, lines, two.safe_position(SOURCE) or 24_321, len(lines), tables[0])
    stream = one.streams[("fraud", "v1")]
    assert stream is not stale and one.stats.stale == 1 and stream.events == 30_000
    assert two.stats.stale == 0 and one.stats.restored == 1


def test_checkpoint_table_encodes_a_profile_once_and_as_json_dumps_would() -> None:
    shared: dict[bytes, bytes] = {}
    table = CheckpointTable(shared)
    profile = {"features": {"a": {"mean": 1.5, "bins": [0.0, float("inf")]}}, "n": 3}
    states: list[dict[str, Any]] = [
        {"format": 1, "profile": profile, "detector": {"s": float("nan")}, "windows": 1},
        {"format": 1, "profile": profile, "detector": {"s": 2.0}, "windows": 2},
        {"format": 1, "profile": None, "windows": 3},
        {"profile": profile},
        {"format": 1, "profile": dict(profile, n=4), "windows": 5},  # another profile object
    ]
    for state in states:
        table["m/v"] = state
        # The document plain json.dumps makes, NaN and infinity included (member order aside).
        decoded = json.loads(shared[b"m/v"])
        assert decoded.keys() == state.keys()
        for k, v in state.items():
            assert json.dumps(decoded[k]) == json.dumps(v), k
        assert table["m/v"].keys() == state.keys()
    assert len(table._profiles) == 2  # the first profile was encoded once for four writes
