"""Property tests of the state machine with flap detection and the router (hypothesis).

One alert is evaluated every ``STEP`` seconds of event time with a condition sequence drawn by
hypothesis; the tracker has flap detection on and the router sends to ``am`` (never told
about transients) and ``log`` (told about everything).
"""

from __future__ import annotations

import json
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.fingerprint import fingerprint
from alerting.flapping import FlapDetector
from alerting.router import Router, RouterConfig
from alerting.rules import AlertRule, RuleSet
from alerting.state import AlertTracker
from alerting.types import AlertState, NoticeKind, Notification, Signal, Transition

STEP = 10.0
WINDOW = 21
LABELS = (("model", "m"), ("model_version", "v1"), ("feature", "f"))


def build(for_s: float, keep_s: float) -> tuple[AlertTracker, Router]:
    rules = RuleSet({"X": AlertRule(for_s, keep_s, "warning")})
    tracker = AlertTracker(rules, FlapDetector())
    config = RouterConfig(runbook_base_url="rb/", transient_receivers=frozenset({"log"}))
    return tracker, Router(None, rules, config, ["am", "log"])


def run(
    conds: list[bool],
    for_s: float,
    keep_s: float,
    split: int | None = None,
    labels: tuple[tuple[str, str], ...] = LABELS,
) -> tuple[list[Transition], list[Notification]]:
    """Evaluate ``conds``; at ``split`` the state goes through JSON into new objects."""
    tracker, router = build(for_s, keep_s)
    signal = Signal("X", labels, {"description": "d"})
    transitions: list[Transition] = []
    notes: list[Notification] = []
    for i, cond in enumerate(conds):
        if i == split:
            t_state = json.loads(json.dumps(tracker.snapshot()))
            r_state = json.loads(json.dumps(router.snapshot()))
            tracker, router = build(for_s, keep_s)
            tracker.restore(t_state)
            router.restore(r_state)
        out = tracker.evaluate("g", i * STEP, [signal] if cond else [], i)
        transitions += out
        notes += router.route_transitions(out)
    return transitions, notes


conditions = st.lists(st.booleans(), min_size=1, max_size=80)
for_steps = st.integers(0, 8)
keep_steps = st.integers(0, 6)


@settings(max_examples=300, deadline=None)
@given(conditions, for_steps, keep_steps)
def test_nothing_fires_before_for_has_elapsed(conds: list[bool], f: int, k: int) -> None:
    transitions, notes = run(conds, f * STEP, k * STEP)
    for t in transitions:
        if t.state is AlertState.FIRING:
            i = t.offset
            # The condition held in every evaluation of the last `for` seconds.
            assert all(conds[i - f : i + 1]), (conds, f, i)
            assert i >= f
    fired = {t.offset for t in transitions if t.state is AlertState.FIRING}
    for n in notes:
        if n.kind is NoticeKind.ALERT and n.status == "firing":
            assert n.offset in fired


@settings(max_examples=300, deadline=None)
@given(conditions, for_steps, keep_steps)
def test_every_firing_is_resolved_once_the_condition_stays_false(
    conds: list[bool], f: int, k: int
) -> None:
    # False for longer than keep_firing_for plus the flap history, which must empty too.
    tail = [False] * (k + WINDOW + 2)
    transitions, notes = run(conds + tail, f * STEP, k * STEP)
    open_alerts: dict[tuple[str, str], int] = Counter()
    for n in notes:
        if n.kind is NoticeKind.TRANSIENT:
            continue
        key = (n.receiver, n.fingerprint)
        open_alerts[key] += 1 if n.status == "firing" else -1
        assert open_alerts[key] in {0, 1}, "told firing twice, or resolved without firing"
    assert all(v == 0 for v in open_alerts.values()), notes
    states = [t.state for t in transitions]
    assert states.count(AlertState.FIRING) == states.count(AlertState.RESOLVED)
    assert states.count(AlertState.FLAPPING) == states.count(AlertState.FLAPPING_STOPPED)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=12), st.integers(5, 8))
def test_transients_never_notify(runs: list[int], f: int) -> None:
    """Conditions that never hold for `for` are transients: counted, told only to logs."""
    conds: list[bool] = []
    for r in runs:
        conds += [True] * r + [False] * 2
    transitions, notes = run(conds, f * STEP, 0.0)
    assert AlertState.FIRING not in {t.state for t in transitions}
    assert all(n.receiver == "log" for n in notes if n.kind is NoticeKind.TRANSIENT)
    assert not [n for n in notes if n.kind is NoticeKind.ALERT]
    n_transient = sum(t.state is AlertState.TRANSIENT for t in transitions)
    assert n_transient == len(runs)
    assert sum(n.kind is NoticeKind.TRANSIENT for n in notes) == n_transient


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=15, max_size=40),
    st.integers(0, 2),
)
def test_a_flapping_condition_gives_one_flapping_notification(
    runs: list[tuple[int, int]], k: int
) -> None:
    """On and off for at most 4 evaluations each, for 30+ evaluations: at least five changes
    in any 21 evaluations, so the alert flaps once and stays flapping; with `for` longer
    than any on-run nothing fires, and even with a short `for` no fire/resolve is told."""
    conds: list[bool] = []
    for on, off in runs:
        conds += [True] * on + [False] * off
    for f in (5, 1):
        _, notes = run(conds, f * STEP, k * STEP)
        flapping = [n for n in notes if n.kind is NoticeKind.FLAPPING]
        assert [(n.receiver, n.status) for n in flapping] == [("am", "firing"), ("log", "firing")]
        assert flapping[0].labels["flapping"] == "true"
        first_flap = flapping[0].offset
        told = [n for n in notes if n.kind is NoticeKind.ALERT and n.offset >= first_flap]
        assert told == [], "fire/resolve told while flapping"


@settings(max_examples=200, deadline=None)
@given(conditions, for_steps, keep_steps, st.permutations(LABELS))
def test_fingerprints_are_stable(
    conds: list[bool], f: int, k: int, labels: list[tuple[str, str]]
) -> None:
    base, notes = run(conds, f * STEP, k * STEP)
    shuffled, notes2 = run(conds, f * STEP, k * STEP, labels=tuple(labels))
    assert [t.fingerprint for t in base] == [t.fingerprint for t in shuffled]
    assert [n.fingerprint for n in notes] == [n.fingerprint for n in notes2]
    for t in base:
        assert t.fingerprint == fingerprint(t.labels)
    for n in notes:
        assert n.fingerprint == fingerprint(n.labels)


@settings(max_examples=200, deadline=None)
@given(conditions, for_steps, keep_steps, st.integers(0, 80))
def test_snapshot_restore_changes_nothing(conds: list[bool], f: int, k: int, split: int) -> None:
    """A restart at any evaluation: firing stays firing, `for` timers and flap histories go
    on, nothing is told twice."""
    assert run(conds, f * STEP, k * STEP, split=split) == run(conds, f * STEP, k * STEP)


@settings(max_examples=200, deadline=None)
@given(conditions, for_steps, keep_steps)
def test_flap_detection_adds_transitions_without_changing_the_others(
    conds: list[bool], f: int, k: int
) -> None:
    rules = RuleSet({"X": AlertRule(f * STEP, k * STEP)})
    plain = AlertTracker(rules)
    signal = Signal("X", LABELS)
    expected = [
        t for i, c in enumerate(conds) for t in plain.evaluate("g", i * STEP, [signal] * c, i)
    ]
    transitions, _ = run(conds, f * STEP, k * STEP)
    flap_states = {AlertState.FLAPPING, AlertState.FLAPPING_STOPPED}
    got = [t for t in transitions if t.state not in flap_states]
    assert [(t.state, t.offset) for t in got] == [(t.state, t.offset) for t in expected]
