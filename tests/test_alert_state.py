"""Tests for :mod:`alerting`: the alert state machine, fingerprints and the JSON-lines sink.

The state machine is specified by Prometheus' ``rules/alerting.go`` (see ``alerting/state.py``):
pending -> firing once the condition has held for ``for``; a pending alert whose condition
clears is a ``transient``; a firing alert resolves once the condition has been absent for
``keep_firing_for`` since it first went away (the condition coming back resets that timer).
Unit tests pin the documented timings; hypothesis property tests check the invariants over
random condition sequences.
"""

from __future__ import annotations

import io
import json
import re
from collections import defaultdict
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.fingerprint import fingerprint
from alerting.rules import DEFAULT_RULES, AlertRule, RuleSet
from alerting.sinks import JsonlSink, MemorySink
from alerting.state import AlertTracker
from alerting.timefmt import iso
from alerting.types import AlertState, Signal, Transition

PENDING, FIRING, RESOLVED, TRANSIENT = (
    AlertState.PENDING,
    AlertState.FIRING,
    AlertState.RESOLVED,
    AlertState.TRANSIENT,
)


def tracker(for_s: float, keep_s: float, severity: str = "warning") -> AlertTracker:
    rule = AlertRule(for_s, keep_s, severity)  # type: ignore[arg-type]
    return AlertTracker(RuleSet({"X": rule}, default=rule))


def sig(model: str = "m", feature: str = "f", **annotations: str) -> Signal:
    return Signal("X", (("model", model), ("feature", feature)), dict(annotations))


def states(ts: list[Transition]) -> list[str]:
    return [t.state.value for t in ts]


# -- unit tests of the timings -------------------------------------------------------------------


def test_pending_then_firing_at_exactly_for() -> None:
    t = tracker(60, 0)
    s = sig()
    (p,) = t.evaluate("g", 1000.0, [s], offset=1)
    assert p.state is PENDING
    assert (p.starts_at, p.ends_at, p.offset) == (1000.0, None, 1)
    assert t.evaluate("g", 1030.0, [s], 2) == []
    assert t.evaluate("g", 1059.999, [s], 3) == []
    assert [a.state for a in t.active()] == [PENDING]
    (f,) = t.evaluate("g", 1060.0, [s], 4)
    assert f.state is FIRING
    # Prometheus sends startsAt = FiredAt for a firing alert.
    assert (f.starts_at, f.ends_at, f.offset) == (1060.0, None, 4)
    assert f.fingerprint == p.fingerprint
    assert [a.state for a in t.firing()] == [FIRING]
    assert t.evaluate("g", 2000.0, [s], 5) == []  # firing is reported once


def test_for_zero_fires_at_once_without_a_pending_record() -> None:
    t = tracker(0, 0)
    ts = t.evaluate("g", 5.0, [sig()], 0)
    assert states(ts) == ["firing"]
    assert ts[0].starts_at == 5.0


def test_transient_when_cleared_before_for() -> None:
    t = tracker(60, 30)
    s = sig()
    t.evaluate("g", 0.0, [s], 0)
    t.evaluate("g", 59.0, [s], 1)
    (tr,) = t.evaluate("g", 59.5, [], 2)
    assert tr.state is TRANSIENT
    assert (tr.starts_at, tr.ends_at) == (0.0, 59.5)
    assert t.active() == []
    # Coming back starts a fresh pending alert with a fresh `for` timer.
    assert states(t.evaluate("g", 70.0, [s], 3)) == ["pending"]
    assert t.evaluate("g", 120.0, [s], 4) == []
    assert states(t.evaluate("g", 130.0, [s], 5)) == ["firing"]


def test_keep_firing_for_hysteresis() -> None:
    t = tracker(0, 60)
    s = sig()
    assert states(t.evaluate("g", 0.0, [s], 0)) == ["firing"]
    assert t.evaluate("g", 10.0, [], 1) == []  # keep_firing_since = 10
    assert t.evaluate("g", 50.0, [], 2) == []
    assert t.evaluate("g", 69.9, [], 3) == []
    assert [a.keep_firing_since for a in t.active()] == [10.0]
    (r,) = t.evaluate("g", 70.0, [], 4)  # 70 - 10 >= 60
    assert r.state is RESOLVED
    # Resolved: startsAt stays the firing time, endsAt is the resolution time.
    assert (r.starts_at, r.ends_at) == (0.0, 70.0)
    assert t.active() == []


def test_keep_firing_for_resets_when_the_condition_returns() -> None:
    t = tracker(0, 60)
    s = sig()
    t.evaluate("g", 0.0, [s], 0)
    t.evaluate("g", 10.0, [], 1)  # keep_firing_since = 10
    assert t.evaluate("g", 40.0, [s], 2) == []  # back: timer reset, no new firing record
    assert [a.keep_firing_since for a in t.active()] == [None]
    assert t.evaluate("g", 50.0, [], 3) == []  # keep_firing_since = 50
    assert t.evaluate("g", 100.0, [], 4) == []  # 100 - 50 < 60 (but 100 - 10 >= 60)
    (r,) = t.evaluate("g", 110.0, [], 5)
    assert r.state is RESOLVED
    assert (r.starts_at, r.ends_at) == (0.0, 110.0)


def test_keep_firing_for_zero_resolves_at_the_first_clear_evaluation() -> None:
    t = tracker(30, 0)
    s = sig()
    t.evaluate("g", 0.0, [s], 0)
    (f,) = t.evaluate("g", 30.0, [s], 1)
    (r,) = t.evaluate("g", 31.0, [], 2)
    assert (f.state, r.state) == (FIRING, RESOLVED)
    assert (r.starts_at, r.ends_at) == (30.0, 31.0)
    assert f.to_record()["endsAt"] is None
    assert r.to_record()["endsAt"] == iso(31.0)


def test_labels_severity_annotations_and_dedup() -> None:
    t = tracker(10, 0, severity="critical")
    first = sig(value="0.3")
    (p,) = t.evaluate("g", 0.0, [first, first], 0)  # duplicates count once
    assert p.labels == {"alertname": "X", "model": "m", "feature": "f", "severity": "critical"}
    assert p.fingerprint == fingerprint(p.labels)
    assert p.annotations == {"value": "0.3"}
    (f,) = t.evaluate("g", 10.0, [sig(value="0.9")], 1)
    assert f.annotations == {"value": "0.9"}  # the latest annotations are reported
    # Different labels are different alerts.
    ts = t.evaluate("g", 11.0, [sig(), sig(feature="h")], 2)
    assert states(ts) == ["pending"]
    assert ts[0].labels["feature"] == "h"


def test_rules_and_defaults() -> None:
    rules = RuleSet()
    assert rules.rule("DataQuality") == DEFAULT_RULES["DataQuality"]
    assert rules.rule("DataQuality").severity == "critical"
    assert rules.rule("Unknown") == AlertRule()
    with pytest.raises(ValueError, match="for_seconds"):
        AlertRule(for_seconds=-1)
    with pytest.raises(ValueError, match="keep_firing_for_seconds"):
        AlertRule(keep_firing_for_seconds=-0.5)


def test_group_isolation() -> None:
    t = tracker(0, 100)
    a, b = sig(model="a"), sig(model="b")
    t.evaluate("A", 0.0, [a], 0)
    t.evaluate("B", 0.0, [b], 0)
    before_b = {fp: v for fp, v in t.snapshot()["alerts"].items() if v["group"] == "B"}
    # Group A's condition goes away and A resolves; B's alert must not notice anything.
    assert t.evaluate("A", 10.0, [], 1) == []
    (r,) = t.evaluate("A", 200.0, [], 2)
    assert r.labels["model"] == "a"
    after_b = {fp: v for fp, v in t.snapshot()["alerts"].items() if v["group"] == "B"}
    assert after_b == before_b
    assert [x.labels["model"] for x in t.firing()] == ["b"]
    # And an evaluation of B does not resurrect or touch A.
    assert t.evaluate("B", 300.0, [b], 3) == []
    assert [x.group for x in t.active()] == ["B"]


@pytest.mark.parametrize("stop_at", [1, 2, 3, 4])
def test_snapshot_restore_keeps_timers(stop_at: int) -> None:
    """Run a scripted history twice: once straight through, once snapshotting to JSON after step
    ``stop_at`` (mid-pending at 1, firing at 2, keep-firing at 3 and 4) and continuing in a new
    tracker. Both must emit the same transitions afterwards."""
    s1, s2 = sig(feature="a"), sig(feature="b")
    script: list[tuple[float, list[Signal]]] = [
        (0.0, [s1]),  # a pending
        (40.0, [s1, s2]),  # b pending
        (60.0, [s1, s2]),  # a fires (for 60)
        (70.0, [s2]),  # a keep-firing since 70
        (100.0, [s2]),  # b fires
        (129.0, [s1]),  # a back (resets), b keep-firing since 129
        (140.0, []),  # a keep-firing since 140
        (189.0, []),  # b resolves (189 - 129 >= 60)
        (200.0, []),  # a resolves (200 - 140 >= 60)
    ]
    straight = tracker(60, 60)
    expected = [straight.evaluate("g", t, s, i) for i, (t, s) in enumerate(script)]
    first = tracker(60, 60)
    got = [first.evaluate("g", t, s, i) for i, (t, s) in enumerate(script[:stop_at])]
    restored = tracker(60, 60)
    restored.restore(json.loads(json.dumps(first.snapshot())))
    assert restored.snapshot() == first.snapshot()
    got += [restored.evaluate("g", t, s, i) for i, (t, s) in enumerate(script) if i >= stop_at]
    assert got == expected
    assert states([x for ts in expected for x in ts]) == [
        "pending",
        "pending",
        "firing",
        "firing",
        "resolved",
        "resolved",
    ]


def test_restore_replaces_state() -> None:
    t = tracker(10, 0)
    t.evaluate("g", 0.0, [sig()], 0)
    t.restore({"alerts": {}})
    assert t.active() == []
    assert t.evaluate("g", 5.0, [], 1) == []  # nothing left to turn transient


# -- property tests ------------------------------------------------------------------------------

Step = tuple[int, list[bool], bool]


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, int, int, list[Step]]:
    for_s = draw(st.integers(0, 40))
    keep_s = draw(st.integers(0, 40))
    n_fp = draw(st.integers(1, 3))
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(1, 15),
                st.lists(st.booleans(), min_size=n_fp, max_size=n_fp),
                st.booleans(),
            ),
            min_size=1,
            max_size=40,
        )
    )
    return for_s, keep_s, n_fp, steps


LIFECYCLE = re.compile(r"^(PT|PFR|FR)*(P|PF|F)?$")
LETTER = {PENDING: "P", FIRING: "F", RESOLVED: "R", TRANSIENT: "T"}


@settings(max_examples=200, deadline=None)
@given(histories())
def test_state_machine_properties(history: tuple[int, int, int, list[Step]]) -> None:
    for_s, keep_s, n_fp, steps = history
    main = tracker(for_s, keep_s)
    reordered = tracker(for_s, keep_s)
    signals = [sig(feature=f"f{i}") for i in range(n_fp)]
    fps = [
        fingerprint({"alertname": "X", "model": "m", "feature": f"f{i}", "severity": "warning"})
        for i in range(n_fp)
    ]
    # Per fingerprint: (time, condition, transitions at that step).
    trace: dict[int, list[tuple[int, bool, list[Transition]]]] = defaultdict(list)
    now = 0
    for k, (dt, conds, reverse) in enumerate(steps):
        now += dt
        active = [s for s, c in zip(signals, conds, strict=True) if c]
        out = main.evaluate("g", float(now), active, k)
        other = reordered.evaluate("g", float(now), active[::-1] if reverse else active, k)
        # Order independence: the same transitions whatever the order of the signals.
        assert sorted(out, key=lambda t: t.fingerprint) == sorted(
            other, key=lambda t: t.fingerprint
        )
        # Snapshot/restore at every step: a restored copy behaves identically from here on.
        if k % 3 == 0:
            copy = tracker(for_s, keep_s)
            copy.restore(json.loads(json.dumps(main.snapshot())))
            reordered = copy
        for i in range(n_fp):
            mine = [t for t in out if t.fingerprint == fps[i]]
            trace[i].append((now, conds[i], mine))
        assert {t.fingerprint for t in out} <= set(fps)
        # The tracker's view agrees with the transitions seen so far.
        for a in main.active():
            assert a.state in (PENDING, FIRING)

    for i in range(n_fp):
        _check_fingerprint_trace(trace[i], for_s, keep_s, main, fps[i])


def _check_fingerprint_trace(
    trace: list[tuple[int, bool, list[Transition]]],
    for_s: int,
    keep_s: int,
    main: AlertTracker,
    fp: str,
) -> None:
    letters = ""
    state: AlertState | None = None  # reconstructed from the transitions
    run_start: int | None = None  # start of the current run of true conditions
    false_since: int | None = None  # first false evaluation while firing
    created_at: int | None = None
    fired_at: int | None = None
    for now, cond, ts in trace:
        assert len(ts) <= 1, "at most one transition per alert per evaluation"
        run_start = (now if run_start is None else run_start) if cond else None
        t = ts[0] if ts else None
        if t is not None:
            letters += LETTER[t.state]
        if state is None:
            if cond:
                # A new alert: pending, or firing at once when `for` is zero.
                assert t is not None
                assert t.state is (FIRING if for_s == 0 else PENDING)
                assert t.starts_at == now
                assert t.ends_at is None
                created_at, false_since = now, None
                state = t.state
                if state is FIRING:
                    fired_at = now
            else:
                assert t is None
        elif state is PENDING:
            assert created_at is not None
            if not cond:
                # Cleared before `for`: a transient, which never fires.
                assert t is not None
                assert t.state is TRANSIENT
                assert (t.starts_at, t.ends_at) == (created_at, now)
                state = None
            elif now - created_at >= for_s:
                # Fires at the first evaluation where `for` has elapsed, never earlier; the
                # condition held at every evaluation since the alert became active.
                assert run_start == created_at
                assert t is not None
                assert t.state is FIRING
                assert (t.starts_at, t.ends_at) == (now, None)
                state, fired_at, false_since = FIRING, now, None
            else:
                assert t is None, "no firing before `for` has elapsed"
        else:  # firing
            assert fired_at is not None
            if cond:
                assert t is None
                false_since = None
            else:
                false_since = now if false_since is None else false_since
                if now - false_since >= keep_s:
                    # Resolves once the condition stayed false for keep_firing_for.
                    assert t is not None
                    assert t.state is RESOLVED
                    assert (t.starts_at, t.ends_at) == (fired_at, now)
                    state = None
                else:
                    assert t is None
        if t is not None:
            assert t.fingerprint == fp
            assert t.fingerprint == fingerprint(t.labels)
    # Legal sequences only: pending -> firing | transient, firing -> resolved. Lifecycles are
    # PT, PFR or FR (the last one possibly unfinished), so a transient never fired.
    assert LIFECYCLE.match(letters), letters
    # The tracker's final state matches the reconstruction.
    snapshot = main.snapshot()["alerts"]
    if state is None:
        assert fp not in snapshot
    else:
        assert snapshot[fp]["state"] == state.value


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["A", "B"]), st.integers(1, 20), st.booleans()),
        min_size=1,
        max_size=40,
    ),
    st.integers(0, 30),
    st.integers(0, 30),
)
def test_group_isolation_property(
    steps: list[tuple[str, int, bool]], for_s: int, keep_s: int
) -> None:
    t = tracker(for_s, keep_s)
    signal = {"A": sig(model="a"), "B": sig(model="b")}
    now = 0
    for k, (group, dt, cond) in enumerate(steps):
        now += dt
        other = "B" if group == "A" else "A"
        before = {fp: v for fp, v in t.snapshot()["alerts"].items() if v["group"] == other}
        out = t.evaluate(group, float(now), [signal[group]] if cond else [], k)
        after = {fp: v for fp, v in t.snapshot()["alerts"].items() if v["group"] == other}
        assert after == before
        assert all(x.labels["model"] == group.lower() for x in out)


# -- fingerprints --------------------------------------------------------------------------------


def _fnv1a_64(data: bytes) -> int:
    """Reference FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3)."""
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) % 2**64
    return h


def test_fingerprint_of_the_empty_label_set_is_the_fnv_offset_basis() -> None:
    assert fingerprint({}) == "cbf29ce484222325"
    assert int(fingerprint({}), 16) == 14695981039346656037


def test_fingerprint_hand_computed() -> None:
    # LabelSet{"x": "y"}: hash the bytes  x 0xff y 0xff.
    h = 0xCBF29CE484222325
    for byte in (0x78, 0xFF, 0x79, 0xFF):  # 'x', separator, 'y', separator
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    assert fingerprint({"x": "y"}) == f"{h:016x}"
    # prometheus/common model/metric_test.go expects 8241431561484471700 for this label set.
    assert h == 8241431561484471700


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # Test vectors of prometheus/common model/metric_test.go (Metric.Fingerprint()).
        ({}, 14695981039346656037),
        (
            {"first_name": "electro", "occupation": "robot", "manufacturer": "westinghouse"},
            5911716720268894962,
        ),
        ({"x": "y"}, 8241431561484471700),
        ({"a": "bb", "b": "c"}, 3016285359649981711),
        ({"a": "b", "bb": "c"}, 7122421792099404749),  # the separator keeps these apart
    ],
)
def test_fingerprint_matches_prometheus_common(labels: dict[str, str], expected: int) -> None:
    assert fingerprint(labels) == f"{expected:016x}"


label_sets = st.dictionaries(
    st.text(min_size=1, max_size=8), st.text(max_size=8), min_size=0, max_size=6
)


@settings(max_examples=100, deadline=None)
@given(label_sets)
def test_fingerprint_is_order_independent_and_fnv1a(labels: dict[str, str]) -> None:
    fp = fingerprint(labels)
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert fingerprint(dict(reversed(list(labels.items())))) == fp
    assert fingerprint(dict(sorted(labels.items()))) == fp
    data = b"".join(k.encode() + b"\xff" + labels[k].encode() + b"\xff" for k in sorted(labels))
    assert fp == f"{_fnv1a_64(data):016x}"
    assert fingerprint(labels) == fp  # stable


def test_fingerprint_changes_with_any_label() -> None:
    base = {"alertname": "FeatureDrift", "model": "m", "feature": "f"}
    fps = {
        fingerprint(base),
        fingerprint({**base, "feature": "g"}),
        fingerprint({**base, "extra": ""}),
        fingerprint({k: v for k, v in base.items() if k != "model"}),
    }
    assert len(fps) == 4


# -- records and the JSON-lines sink -------------------------------------------------------------

RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
RECORD_KEYS = {
    "state",
    "alertname",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "offset",
    "fingerprint",
}


class CountingBytesIO(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_iso_times() -> None:
    assert iso(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"
    assert iso(1_700_000_000.25) == "2023-11-14T22:13:20.250Z"


def test_jsonl_sink_record_format() -> None:
    t = tracker(10, 0)
    s = Signal("X", (("model", "m"), ("feature", "f")), {"value": "0.5"})
    history = [
        t.evaluate("g", 1_700_000_000.0, [s], 7),
        t.evaluate("g", 1_700_000_010.0, [s], 8),
        t.evaluate("g", 1_700_000_012.5, [], 9),
    ]
    stream = CountingBytesIO()
    sink = JsonlSink(stream)
    for batch in history:
        sink.send(batch)
    sink.send([])
    assert sink.written == 3
    assert stream.flushes == 3  # once per non-empty batch
    lines = stream.getvalue().splitlines()
    records: list[dict[str, Any]] = [json.loads(line) for line in lines]
    assert [r["state"] for r in records] == ["pending", "firing", "resolved"]
    for r in records:
        assert set(r) == RECORD_KEYS
        assert r["alertname"] == "X"
        assert r["labels"] == {
            "alertname": "X",
            "model": "m",
            "feature": "f",
            "severity": "warning",
        }
        assert r["annotations"] == {"value": "0.5"}
        assert r["fingerprint"] == fingerprint(r["labels"])
        assert RFC3339_Z.match(r["startsAt"])
        assert r["endsAt"] is None or RFC3339_Z.match(r["endsAt"])
    assert [r["offset"] for r in records] == [7, 8, 9]
    pending, firing, resolved = records
    assert pending["startsAt"] == "2023-11-14T22:13:20.000Z"
    assert pending["endsAt"] is None
    assert firing["startsAt"] == "2023-11-14T22:13:30.000Z"
    assert firing["endsAt"] is None
    assert resolved["startsAt"] == firing["startsAt"]
    assert resolved["endsAt"] == "2023-11-14T22:13:32.500Z"
    parsed = datetime.fromisoformat(resolved["endsAt"])
    assert parsed.timestamp() == 1_700_000_012.5
    sink.close()
    assert stream.flushes == 4


def test_memory_sink_keeps_transitions() -> None:
    t = tracker(0, 0)
    sink = MemorySink()
    sink.send(t.evaluate("g", 0.0, [sig()], 0))
    sink.send(t.evaluate("g", 1.0, [], 1))
    sink.close()
    assert states(sink.transitions) == ["firing", "resolved"]
