"""Flap detection (Nagios' weighted percent state change), escalation, rules from settings, and
the ``flapping`` simulation through the pipeline and router."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting.flapping import FlapDetector, FlapSettings, percent_state_change
from alerting.notify import Notifier, build_router, build_tracker
from alerting.rules import AlertRule, Escalation, RuleSet
from alerting.settings import AlertRuleSettings, NotificationSettings, rule_set_from
from alerting.state import AlertTracker
from alerting.transport import MemoryTransport
from alerting.types import AlertState, NoticeKind, Signal
from monitor.pipeline import Pipeline
from monitor.scenarios.simulate import generate


def nagios_percent(states: list[int]) -> float:
    """A direct transcription of ``base/flapping.c`` (oldest state first, 21 entries)."""
    low, high, n = 0.75, 1.25, 21
    total, last = 0.0, states[0]
    for x in range(1, n):
        if states[x] != last:
            total += low + (x - 1) * (high - low) / (n - 2)
        last = states[x]
    return total * 100.0 / (n - 1)


@given(st.lists(st.integers(0, 1), min_size=21, max_size=21))
def test_percent_matches_nagios(states: list[int]) -> None:
    bits = int("".join(map(str, states)), 2)  # newest (last) in bit 0
    assert percent_state_change(bits, FlapSettings()) == pytest.approx(nagios_percent(states))


def test_hysteresis_starts_at_high_and_stops_at_low() -> None:
    d = FlapDetector(FlapSettings(low_threshold=5, high_threshold=20))
    on: dict[str, tuple[str, dict[str, str], dict[str, str]]]
    on = {"fp": ("X", {"alertname": "X"}, {})}
    pattern = [1, 1, 0, 0] * 6 + [0] * 25
    log = []
    for i, c in enumerate(pattern):
        for change in d.observe("g", float(i), on if c else {}):
            log.append((i, change.started, round(change.history.percent, 2)))
    (start, stop) = log
    assert start[1] and start[2] >= 20
    assert not stop[1] and stop[2] <= 5
    # Between them, the percentage fell below 20 without ending the flapping.
    assert stop[0] - start[0] > 10
    assert d.history("fp") is None  # forgotten once quiet


def test_flap_histories_survive_snapshot_per_group() -> None:
    d = FlapDetector()
    a: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {"a": ("X", {"m": "a"}, {})}
    b: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {"b": ("X", {"m": "b"}, {})}
    for i in range(8):
        d.observe("ga", i, a if i % 2 else {})
        d.observe("gb", i, b if i % 2 else {})
    assert d.is_flapping("a") and d.is_flapping("b")
    state = json.loads(json.dumps(d.snapshot("ga")))
    d.restore({"histories": {}}, "ga")
    assert not d.is_flapping("a") and d.is_flapping("b")
    d.restore(state, "ga")
    assert d.is_flapping("a") and d.is_flapping("b")


@pytest.mark.parametrize(
    "kwargs", [{"window": 2}, {"low_threshold": 30, "high_threshold": 20}, {"low_weight": 0}]
)
def test_flap_settings_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FlapSettings(**kwargs)  # type: ignore[arg-type]


def test_escalation_adds_a_critical_copy_that_resolves_with_the_alert() -> None:
    rule = AlertRule(10, 0, "warning", escalation=(Escalation(30, "critical"),))
    tracker = AlertTracker(RuleSet({"X": rule}))
    s = Signal("X", (("model", "m"),))
    log = []
    for i, cond in enumerate([1, 1, 1, 1, 1, 1, 0]):
        for t in tracker.evaluate("g", i * 10.0, [s] if cond else [], i):
            log.append((i, t.state.value, t.labels["severity"], t.escalated_from is not None))
    assert log == [
        (0, "pending", "warning", False),
        (1, "firing", "warning", False),
        (4, "firing", "critical", True),  # 30 s after firing at t=10
        (6, "resolved", "warning", False),
        (6, "resolved", "critical", True),
    ]
    snap = tracker.snapshot()
    assert snap == {"alerts": {}}


def test_escalation_must_raise_severity() -> None:
    with pytest.raises(ValueError, match="raise the severity"):
        AlertRule(10, 0, "critical", escalation=(Escalation(30, "warning"),))


def test_rules_from_settings_override_builtins() -> None:
    rules = rule_set_from(
        {
            "FeatureDrift": AlertRuleSettings.model_validate(
                {"for": "2m", "escalation": [{"after": "30m", "severity": "critical"}]}
            ),
            "Custom": AlertRuleSettings.model_validate({"runbook": "https://rb/custom"}),
        }
    )
    fd = rules.rule("FeatureDrift")
    assert (fd.for_seconds, fd.keep_firing_for_seconds, fd.severity) == (120, 60, "warning")
    assert fd.escalation == (Escalation(1800, "critical"),)
    assert rules.rule("DataQuality").for_seconds == 30
    assert rules.rule("Custom").runbook == "https://rb/custom"
    router = build_router(NotificationSettings(runbook_base_url="https://rb/"), rules)
    assert router.runbook_url("Custom") == "https://rb/custom"
    assert router.runbook_url("FeatureDrift") == "https://rb/FeatureDrift.md"
    with pytest.raises(ValueError, match=r"alerts\.X: escalation"):
        rule_set_from(
            {
                "X": AlertRuleSettings.model_validate(
                    {"escalation": [{"after": 1, "severity": "info"}]}
                )
            }
        )


def test_default_runbook_url_is_this_repository() -> None:
    router = build_router(NotificationSettings(), RuleSet())
    url = router.runbook_url("DataQuality")
    assert url.startswith("file://") and url.endswith("/deploy/runbooks/DataQuality.md")


def run_flapping(
    ns: NotificationSettings, rules: RuleSet
) -> tuple[list[AlertState], Notifier, MemoryTransport, Pipeline]:
    transport = MemoryTransport()
    notifier = Notifier.from_settings(ns, rules, transport=transport)
    pipeline = Pipeline(tracker=build_tracker(rules, ns))
    sim = generate("flapping", 40_000, 7, 100.0)
    states: list[AlertState] = []
    offset = 0
    for chunk in sim.chunks():
        out = pipeline.process_lines(chunk, offset)
        offset += len(chunk)
        states += [t.state for t in out]
        notifier.send(out)
    notifier.close()
    return states, notifier, transport, pipeline


def test_flapping_scenario_gives_one_flapping_notification_not_a_stream() -> None:
    ns = NotificationSettings.model_validate(
        {"receivers": [{"name": "am", "alertmanager": {"urls": ["http://am:9093"]}}]}
    )
    states, notifier, transport, _ = run_flapping(ns, rule_set_from({}))
    assert states.count(AlertState.FIRING) == 0
    assert states.count(AlertState.TRANSIENT) >= 2
    assert states.count(AlertState.FLAPPING) == 1
    assert notifier.notifications == 1
    assert notifier.router.transients["FeatureDrift"] == states.count(AlertState.TRANSIENT)
    alerts = [a for _, body, _ in transport.requests for a in json.loads(body)]
    assert {a["labels"]["flapping"] for a in alerts} == {"true"}

    # With a short `for` every on-period would fire and resolve; flapping stops the stream.
    short = rule_set_from(
        {"FeatureDrift": AlertRuleSettings.model_validate({"for": "10s", "keep_firing_for": 0})}
    )
    states, notifier, _, _ = run_flapping(ns, short)
    assert states.count(AlertState.FIRING) == 3  # the tracker still sees every on-period
    # Told: fire, resolve, fire; then flapping starts in the evaluation that would resolve the
    # second on-period, and what receivers were told (firing) is frozen until it stops.
    assert notifier.notifications == 4
    snap = notifier.router.snapshot()
    assert len(snap["told"]) == 1 and len(snap["flapping"]) == 1
    assert notifier.router.suppressed["FeatureDrift"] == 2  # a resolve, then a fire


def test_restart_resends_what_is_still_firing_to_alertmanager_only() -> None:
    ns = NotificationSettings.model_validate(
        {
            "receivers": [
                {"name": "am", "alertmanager": {"urls": ["http://am:9093"]}},
                {"name": "hook", "webhook": {"url": "http://hook:1/x"}},
            ]
        }
    )
    rules = RuleSet({"X": AlertRule(0, 0)})
    transport = MemoryTransport()
    first = Notifier.from_settings(ns, rules, transport=transport)
    tracker = build_tracker(rules, ns)
    first.send(tracker.evaluate("g", 0.0, [Signal("X", (("model", "m"),))], 0))
    first.close()
    assert len(transport.requests) == 2  # one to Alertmanager, one to the webhook
    state = json.loads(json.dumps(first.snapshot()))

    transport.requests.clear()
    second = Notifier.from_settings(ns, rules, transport=transport)
    second.restore(state)
    second.close()
    ((url, body, _),) = transport.requests
    assert url == "http://am:9093/api/v2/alerts"
    assert json.loads(body)[0]["labels"]["alertname"] == "X"
    assert second.router.route_transitions([]) == []
    assert [n.kind for n in second.router.resume()] == [NoticeKind.ALERT, NoticeKind.ALERT]


def test_counters_are_exposed_to_prometheus() -> None:
    from prometheus_client import CollectorRegistry

    from alerting.metrics import NotificationCollector

    ns = NotificationSettings.model_validate(
        {"receivers": [{"name": "am", "alertmanager": {"urls": ["http://am:9093"]}}]}
    )
    _, notifier, _, _ = run_flapping(ns, rule_set_from({}))
    registry = CollectorRegistry()
    registry.register(NotificationCollector(notifier))
    get = registry.get_sample_value
    assert get("driftwatch_notifications_sent_total", {"receiver": "am"}) == 1
    assert get("driftwatch_notifications_dropped_total", {"receiver": "am"}) == 0
    transients = get("driftwatch_alert_transients_total", {"alertname": "FeatureDrift"})
    assert transients is not None and transients >= 2
