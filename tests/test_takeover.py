"""Alerts survive a restart (issue 16, defect 1): when its partitions are assigned, a worker
takes over the alerts held active in their checkpoints and tells Alertmanager again at once,
with the original ``startsAt``, without waiting for input; resolved alerts are not re-fired
and receivers that do not keep alerts (webhooks, the alert log) are not told twice."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

from alerting.flapping import FlapDetector, FlapSettings
from alerting.notify import Notifier, build_tracker
from alerting.rules import AlertRule, Escalation, RuleSet
from alerting.settings import NotificationSettings
from alerting.state import AlertTracker
from alerting.transport import MemoryTransport
from alerting.types import AlertState, NoticeKind, Signal, Transition
from monitor.checkpointing import taken_over
from monitor.config import settings_from_mapping
from monitor.kafka_adapter import KafkaAdapter
from monitor.pipeline import Pipeline
from tests.test_kafka_adapter import SETTINGS, fraud_alerts, two_streams

X = Signal("X", (("model", "m"),))
NS = NotificationSettings.model_validate(
    {
        "receivers": [
            {"name": "am", "alertmanager": {"urls": ["http://am:9093"]}},
            {"name": "hook", "webhook": {"url": "http://hook:1/x"}},
        ]
    }
)


def test_the_tracker_resumes_firing_alerts_at_their_fired_time_with_escalations() -> None:
    rule = AlertRule(10, 0, "warning", escalation=(Escalation(30, "critical"),))
    tracker = AlertTracker(RuleSet({"X": rule, "Y": AlertRule(100, 0)}))
    y = Signal("Y", (("model", "m"),))
    for i in range(5):  # X fires at 10 and escalates at 40; Y stays pending
        tracker.evaluate("g", i * 10.0, [X, y], i)
    restored = AlertTracker(tracker.rules)
    restored.restore_group("g", json.loads(json.dumps(tracker.snapshot_group("g"))))
    out = restored.resume("g", offset=7)
    assert [(t.state, t.labels["severity"], t.starts_at, t.offset) for t in out] == [
        (AlertState.FIRING, "warning", 10.0, 7),
        (AlertState.FIRING, "critical", 40.0, 7),
    ]
    assert out[1].escalated_from == out[0].fingerprint
    assert restored.resume("other") == []
    restored.evaluate("g", 50.0, [], 9)  # resolved: nothing left to resume
    assert restored.resume("g") == []


def test_the_tracker_resumes_flapping_alerts_from_when_they_started() -> None:
    tracker = AlertTracker(RuleSet({"X": AlertRule(0, 0)}), FlapDetector(FlapSettings()))
    started = None
    for i in range(30):
        for t in tracker.evaluate("g", float(i), [X] if (i // 2) % 2 == 0 else [], i):
            if t.state is AlertState.FLAPPING:
                started = t.starts_at
    assert started is not None
    restored = AlertTracker(tracker.rules, FlapDetector(FlapSettings()))
    restored.restore_group("g", json.loads(json.dumps(tracker.snapshot_group("g"))))
    flapping = [t for t in restored.resume("g") if t.state is AlertState.FLAPPING]
    assert [t.starts_at for t in flapping] == [started]


def test_the_router_tells_stateful_receivers_again_and_keeps_flapping_suppression() -> None:
    rules = RuleSet({"X": AlertRule(0, 0)})
    tracker = build_tracker(rules, NS)
    fired = tracker.evaluate("g", 5.0, [X], 0)
    transport = MemoryTransport()
    first = Notifier.from_settings(NS, rules, transport=transport)
    first.send(fired)
    first.close()
    assert len(transport.requests) == 2  # Alertmanager and the webhook, once each

    transport.requests.clear()
    second = Notifier.from_settings(NS, rules, transport=transport)
    second.resume(tracker.resume("g"))
    second.close()
    ((url, body, _),) = transport.requests  # Alertmanager only
    assert url == "http://am:9093/api/v2/alerts"
    (alert,) = json.loads(body)
    assert alert["labels"]["alertname"] == "X" and alert["startsAt"].startswith("1970-01-01T")
    # Told already: the same firing decided again (re-delivered input) is not sent again,
    # and its resolution is.
    assert second.router.route_transitions(fired) == []
    resolved = tracker.evaluate("g", 6.0, [], 1)
    assert [n.status for n in second.router.route_transitions(resolved)] == ["resolved"] * 2

    # A firing alert that is flapping was suppressed: only the flapping notice is resumed.
    # (Another alert's flapping does not suppress it.)
    flap = Transition(AlertState.FLAPPING, "X", fired[0].labels, {}, 1.0, None, 0, "f")
    third = Notifier.from_settings(NS, rules, transport=MemoryTransport())
    notes = third.router.resumed([flap, *fired])
    third.close()
    assert [n.kind for n in notes if n.receiver == "am"] == [NoticeKind.FLAPPING, NoticeKind.ALERT]
    base = fired[0].fingerprint
    flap = Transition(AlertState.FLAPPING, "X", fired[0].labels, {}, 1.0, None, 0, base)
    fourth = Notifier.from_settings(NS, rules, transport=MemoryTransport())
    notes = fourth.router.resumed([flap, *fired])
    fourth.close()
    assert [n.kind for n in notes if n.receiver == "am"] == [NoticeKind.FLAPPING]


class ResumeSink:
    def __init__(self) -> None:
        self.sent: list[Transition] = []
        self.resumed: list[Transition] = []

    def send(self, transitions: list[Transition]) -> None:
        self.sent.extend(transitions)

    def resume(self, transitions: list[Transition]) -> None:
        self.resumed.extend(transitions)

    def close(self) -> None:
        pass


def adapter(table: dict[str, Any], sink: ResumeSink) -> KafkaAdapter:
    settings = settings_from_mapping(SETTINGS)
    pipeline = Pipeline(settings, checkpoints=table.get, checkpointing=True)

    async def dead_letter(*_: Any) -> None:
        return None

    return KafkaAdapter(pipeline, table, dead_letter, [sink])


def test_a_restarted_adapter_takes_over_the_firing_alert_of_its_partitions() -> None:
    msgs = two_streams(30_000)
    table: dict[str, Any] = {}
    sink = ResumeSink()
    first = adapter(table, sink)

    async def feed(a: KafkaAdapter, until: int) -> None:
        for m in msgs[:until]:
            if a.add(m, m.value, lambda: None):
                await a.flush()
        await a.flush()

    asyncio.run(feed(first, 26_000))
    firing = [t for t in sink.sent if t.state is AlertState.FIRING]
    assert [t.labels["model"] for t in firing] == ["fraud"]
    state = json.loads(json.dumps(table["fraud/v1"]))
    assert taken_over(state, {0}) and not taken_over(state, {1})
    assert not taken_over(json.loads(json.dumps(table["churn/v1"])), {0})  # nothing firing

    # The restart: a new adapter over the same checkpoints, and no input at all.
    again = ResumeSink()
    second = adapter(table, again)
    assert asyncio.run(second.adopt({1})) == 0 and again.resumed == []  # not its partition
    assert asyncio.run(second.adopt({0})) == 1
    assert [(t.state, t.starts_at, t.fingerprint) for t in again.resumed] == [
        (AlertState.FIRING, firing[0].starts_at, firing[0].fingerprint)
    ]
    assert again.sent == []  # the alert log does not get it twice
    assert [a.state for a in second.pipeline.tracker.firing()] == [AlertState.FIRING]

    # Input resumes from the committed offset: the alert goes on to resolve as it would have.
    asyncio.run(feed(second, len(msgs)))  # re-delivered input is skipped by position
    straight = ResumeSink()
    asyncio.run(feed(adapter({}, straight), len(msgs)))
    assert fraud_alerts(sink.sent + again.sent) == fraud_alerts(straight.sent)


def test_revoked_partitions_are_released_and_their_alerts_no_longer_re_sent() -> None:
    """Scale-out: another worker takes partition 0. This one forgets the streams fed from
    it and stops re-sending their alerts to Alertmanager without resolving them (the new
    owner keeps them alive and resolves them); given the partition back, it takes over."""
    msgs = two_streams(26_100)
    table: dict[str, Any] = {}
    transport = MemoryTransport()
    ns = NotificationSettings.model_validate(
        {"receivers": [{"name": "am", "alertmanager": {"urls": ["http://am:9093"]}}]}
    )
    settings = settings_from_mapping(SETTINGS)
    pipeline = Pipeline(settings, checkpoints=table.get, checkpointing=True)
    notifier = Notifier.from_settings(ns, pipeline.tracker.rules, transport=transport)

    async def dead_letter(*_: Any) -> None:
        return None

    a = KafkaAdapter(pipeline, table, dead_letter, [notifier])

    async def feed() -> None:
        for m in msgs:
            if a.add(m, m.value, lambda: None):
                await a.flush()
        await a.flush()

    asyncio.run(feed())
    assert [t.alertname for t in pipeline.tracker.firing()] == ["FeatureDrift"]
    (endpoint,) = notifier.dispatcher.receivers["am"].endpoints  # type: ignore[attr-defined]
    assert len(endpoint._entries) == 1  # re-sent every resend_interval from now on
    assert a.unacked() > 0

    assert asyncio.run(a.release({1})) == 0  # not the partition of these streams
    assert asyncio.run(a.release({0})) == 2
    assert pipeline.streams == {} and pipeline.tracker.active() == []
    assert a.unacked() == 0  # the next owner reads them from the committed offset
    assert endpoint._entries == {} and notifier.router.snapshot()["told"] == {}
    notifier.close()
    bodies = [json.loads(body) for _, body, _ in transport.requests]
    ends = [datetime.fromisoformat(alert["endsAt"]) for b in bodies for alert in b]
    assert ends and min(ends).timestamp() > time.time()  # all firing: never resolved

    # Given back: its alert comes from the checkpoint and is told again.
    assert asyncio.run(a.adopt({0})) == 1
    assert len(endpoint._entries) == 1
