"""Labels across a restart (issue 16, defect 3): the predictions of closed windows wait for
their labels in checkpoints, so after a crash at any point every label is joined exactly once
with its prediction, as in a run that never stopped; the kept predictions stay bounded."""

from __future__ import annotations

from typing import Any

import pytest

from alerting.types import Transition
from monitor.app import CheckpointTable
from monitor.checkpointing import label_segment_key, taken_over
from monitor.config import settings_from_mapping
from monitor.pipeline import Pipeline
from monitor.scenarios.simulate import generate

SOURCE = "events/0"
CHUNK = 500


def feed(p: Pipeline, lines: list[bytes], start: int, stop: int, table: Any) -> list[Transition]:
    """Feed lines [start, stop) a chunk at a time, storing checkpoints as the adapter does."""
    out: list[Transition] = []
    for k in range(start, stop, CHUNK):
        out += p.process_lines(lines[k : min(k + CHUNK, stop)], k, SOURCE)
        for key, state in p.take_checkpoints().items():
            if state is None:
                table.pop(key, None)
            else:
                table[key] = state
    return out


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    # 30,000 predictions and their labels, each label about 220 lines after its prediction:
    # hundreds of labels per window come after the window closed.
    return list(generate("accuracy-drop", 30_000, 5).lines())


@pytest.fixture(scope="module")
def straight(lines: list[bytes]) -> tuple[list[Transition], Pipeline]:
    p = Pipeline(checkpointing=True)
    out = feed(p, lines, 0, len(lines), {})
    return out, p


@pytest.mark.parametrize("crash_at", [11_111, 23_456, 40_000, 52_345])
def test_every_label_is_joined_once_across_a_crash(
    lines: list[bytes], straight: tuple[list[Transition], Pipeline], crash_at: int
) -> None:
    want, p0 = straight
    labelled = p0.streams[("fraud", "v1")].labels
    assert labelled > 25_000 and p0.joiner.unmatched == 0

    table = CheckpointTable({})
    first = Pipeline(checkpointing=True)
    before = feed(first, lines, 0, crash_at, table)
    safe = first.safe_position(SOURCE)
    resume = crash_at if safe is None else safe
    second = Pipeline(checkpoints=table.get, checkpointing=True)
    after = feed(second, lines, resume, len(lines), table)

    stream = second.streams[("fraud", "v1")]
    assert stream.labels == labelled  # each label graded once, none lost
    assert second.joiner.unmatched == 0  # labels of closed windows found their predictions
    assert before + after == want  # the same PerformanceDegradation decisions


def test_kept_predictions_are_bounded_and_forgotten(lines: list[bytes]) -> None:
    settings = settings_from_mapping({"labels": {"ttl": "5s", "max_pending": 2500}})
    table: dict[str, Any] = {}
    p = Pipeline(settings, checkpointing=True)
    feed(p, lines, 0, len(lines), table)
    stream = p.streams[("fraud", "v1")]
    kept = [k for k in table if "#labels/" in k]
    # At most max_pending predictions, in whole windows (1,000) and the newest one always.
    assert 1 <= len(kept) <= 3
    assert sorted(kept) == sorted(
        label_segment_key(stream.group, int(s[0])) for s in stream.label_segments
    )
    assert label_segment_key(stream.group, stream.windows) in kept
    assert sum(len(table[k]["ids"]) for k in kept) <= 2500 + 1000


def test_streams_without_labels_keep_nothing_for_them() -> None:
    table: dict[str, Any] = {}
    p = Pipeline(checkpointing=True)
    feed(p, list(generate("steady", 12_000, 3).lines()), 0, 12_000, table)
    assert [k for k in table if "#labels/" in k] == []
    assert table["fraud/v1"]["label_segments"] == []


@pytest.mark.parametrize("crash_at", [20_100, 27_000, 33_333])
def test_labels_that_come_after_every_window_closed_are_joined_once(
    lines: list[bytes], crash_at: int
) -> None:
    """All predictions first (20 windows closed before any label: a model whose labels come
    a day later), then their labels, with a crash among them; the predictions the join held
    when the first label came were checkpointed then."""
    predictions = [line for line in lines if b'"prediction"' in line][:20_000]
    ids = {line.split(b'"event_id":"')[1].split(b'"')[0] for line in predictions}
    labels = [
        line
        for line in lines
        if b'"prediction"' not in line and line.split(b'"event_id":"')[1].split(b'"')[0] in ids
    ]
    assert len(labels) == 20_000
    ordered = predictions + labels
    table = CheckpointTable({})
    settings = settings_from_mapping({"kafka": {"max_unacked_messages": 3_000}})
    first = Pipeline(settings, checkpointing=True)
    for k in range(0, crash_at, CHUNK):
        stop = min(k + CHUNK, crash_at)
        first.process_lines(ordered[k:stop], k, SOURCE)
        safe = first.safe_position(SOURCE)
        if safe is not None and stop - safe > 3_000:  # as the adapter bounds unacked input
            first.checkpoint_collected(SOURCE, stop - 1_500)
        for key, state in first.take_checkpoints().items():
            if state is None:
                table.pop(key, None)
            else:
                table[key] = state
    safe = first.safe_position(SOURCE)
    resume = crash_at if safe is None else safe
    assert crash_at - resume <= 3_000 + CHUNK
    second = Pipeline(settings, checkpoints=table.get, checkpointing=True)
    # The partition is assigned: streams waiting for labels are restored before input.
    states = {k: table[k] for k in table if "#" not in k and taken_over(table[k], {0})}
    assert list(states) == ["fraud/v1"]
    assert second.adopt(states) == []  # no alert to tell again
    feed(second, ordered, resume, len(ordered), table)
    stream = second.streams[("fraud", "v1")]
    assert stream.labels == 20_000
    assert second.joiner.unmatched == 0
