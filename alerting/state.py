"""The alert state machine: inactive -> pending -> firing -> resolved, per fingerprint.

It follows Prometheus' ``rules/alerting.go`` (v2.42) with event time instead of wall time:

* a condition that appears creates a *pending* alert with ``active_at = now``; with ``for = 0``
  it fires at once;
* a pending alert whose condition is still true once ``now - active_at >= for`` *fires*;
* a pending alert whose condition is gone is dropped; driftwatch records that as a *transient*
  (Prometheus just deletes it) so glitches are counted but never notified;
* a firing alert whose condition is gone starts ``keep_firing_since = now`` and stays firing
  until ``now - keep_firing_since >= keep_firing_for``, then *resolves*; the condition coming
  back resets ``keep_firing_since``.

Conditions are evaluated per *group* (one model version): :meth:`AlertTracker.evaluate` receives
the signals that hold now for the group, and every alert of the group without a signal is
treated as cleared. The tracker does no I/O; its state is a JSON-friendly dict
(:meth:`AlertTracker.snapshot` / :meth:`AlertTracker.restore`) so it survives restarts.

Two opt-in additions, both off unless configured, leave the transitions above unchanged:

* with a :class:`~alerting.flapping.FlapDetector`, every evaluation also feeds each alert's
  condition history, and the tracker emits ``flapping`` (before the evaluation's other
  transitions) and ``flapping_stopped`` (after them) when an alert starts or stops flapping;
* a rule's :class:`~alerting.rules.Escalation` steps emit a second ``firing`` alert with the
  raised severity once the alert has fired for long enough, resolved together with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from alerting.fingerprint import fingerprint
from alerting.flapping import FlapChange, FlapDetector
from alerting.rules import AlertRule, RuleSet
from alerting.types import AlertState, Signal, Transition


@dataclass(slots=True)
class ActiveAlert:
    """A pending or firing alert."""

    group: str
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: AlertState
    active_at: float
    fired_at: float | None = None
    keep_firing_since: float | None = None
    last_true_at: float = 0.0
    escalated_at: list[float] = field(default_factory=list)


class AlertTracker:
    """State machine over all alerts (see module docstring).

    Parameters
    ----------
    rules
        ``for``, ``keep_firing_for``, severity and escalation per alert name.
    flapping
        Flap detection over the last evaluations (none by default: no ``flapping``
        transitions).
    """

    def __init__(self, rules: RuleSet | None = None, flapping: FlapDetector | None = None) -> None:
        self.rules = rules or RuleSet()
        self.flapping = flapping
        self._alerts: dict[str, ActiveAlert] = {}
        self._groups: dict[str, set[str]] = {}

    def active(self) -> list[ActiveAlert]:
        """Pending and firing alerts."""
        return list(self._alerts.values())

    def firing(self) -> list[ActiveAlert]:
        """Firing alerts."""
        return [a for a in self._alerts.values() if a.state is AlertState.FIRING]

    def _labels(self, signal: Signal) -> dict[str, str]:
        labels = {"alertname": signal.alertname, **dict(signal.labels)}
        labels["severity"] = self.rules.rule(signal.alertname).severity
        return labels

    def _transition(
        self,
        alert: ActiveAlert,
        state: AlertState,
        fp: str,
        offset: int,
        now: float,
    ) -> Transition:
        if state is AlertState.PENDING:
            starts, ends = alert.active_at, None
        elif state is AlertState.TRANSIENT:
            starts, ends = alert.active_at, now
        elif state is AlertState.FIRING:
            starts, ends = alert.fired_at or now, None
        else:
            starts, ends = alert.fired_at or alert.active_at, now
        return Transition(
            state=state,
            alertname=alert.alertname,
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            starts_at=starts,
            ends_at=ends,
            offset=offset,
            fingerprint=fp,
        )

    def evaluate(
        self, group: str, now: float, signals: Iterable[Signal], offset: int
    ) -> list[Transition]:
        """Advance every alert of ``group`` to event time ``now``; ``signals`` hold now.

        >>> from alerting.rules import AlertRule
        >>> t = AlertTracker(RuleSet({"X": AlertRule(10, 0)}))
        >>> s = Signal("X", (("model", "m"),))
        >>> [x.state.value for x in t.evaluate("g", 0, [s], 0)]
        ['pending']
        >>> [x.state.value for x in t.evaluate("g", 10, [s], 1)]
        ['firing']
        >>> [x.state.value for x in t.evaluate("g", 20, [], 2)]
        ['resolved']
        """
        out: list[Transition] = []
        members = self._groups.setdefault(group, set())
        present: dict[str, tuple[Signal, dict[str, str]]] = {}
        for signal in signals:
            labels = self._labels(signal)
            present.setdefault(fingerprint(labels), (signal, labels))
        stopped: list[FlapChange] = []
        if self.flapping is not None:
            held = {fp: (s.alertname, labels, s.annotations) for fp, (s, labels) in present.items()}
            for change in self.flapping.observe(group, now, held):
                if change.started:
                    out.append(self._flap_transition(change, offset, now))
                else:
                    stopped.append(change)
        for fp, (signal, labels) in present.items():
            rule = self.rules.rule(signal.alertname)
            alert = self._alerts.get(fp)
            if alert is None:
                alert = ActiveAlert(
                    group=group,
                    alertname=signal.alertname,
                    labels=labels,
                    annotations=dict(signal.annotations),
                    state=AlertState.PENDING,
                    active_at=now,
                    last_true_at=now,
                )
                self._alerts[fp] = alert
                members.add(fp)
                if rule.for_seconds > 0:
                    out.append(self._transition(alert, AlertState.PENDING, fp, offset, now))
            alert.annotations = dict(signal.annotations)
            alert.last_true_at = now
            alert.keep_firing_since = None
            if alert.state is AlertState.PENDING and now - alert.active_at >= rule.for_seconds:
                alert.state = AlertState.FIRING
                alert.fired_at = now
                out.append(self._transition(alert, AlertState.FIRING, fp, offset, now))
            if rule.escalation and alert.state is AlertState.FIRING:
                self._escalate(alert, rule, fp, offset, now, out)
        for fp in sorted(members - present.keys()):
            alert = self._alerts[fp]
            rule = self.rules.rule(alert.alertname)
            if alert.state is AlertState.PENDING:
                out.append(self._transition(alert, AlertState.TRANSIENT, fp, offset, now))
                self._drop(fp)
                continue
            if alert.keep_firing_since is None:
                alert.keep_firing_since = now
            if now - alert.keep_firing_since >= rule.keep_firing_for_seconds:
                out.append(self._transition(alert, AlertState.RESOLVED, fp, offset, now))
                out.extend(self._escalated(alert, AlertState.RESOLVED, fp, offset, now))
                self._drop(fp)
            elif rule.escalation:
                self._escalate(alert, rule, fp, offset, now, out)
        for change in stopped:
            out.append(self._flap_transition(change, offset, now))
        return out

    def _escalate(
        self,
        alert: ActiveAlert,
        rule: AlertRule,
        fp: str,
        offset: int,
        now: float,
        out: list[Transition],
    ) -> None:
        fired = alert.fired_at if alert.fired_at is not None else now
        steps = rule.escalation
        while len(alert.escalated_at) < len(steps):
            if now - fired < steps[len(alert.escalated_at)].after_seconds:
                break
            alert.escalated_at.append(now)
            out.append(self._escalated(alert, AlertState.FIRING, fp, offset, now)[-1])

    def _escalated(
        self, alert: ActiveAlert, state: AlertState, fp: str, offset: int, now: float
    ) -> list[Transition]:
        """Transitions of the escalated copies of ``alert`` reached so far."""
        steps = self.rules.rule(alert.alertname).escalation
        out = []
        for step, since in zip(steps, alert.escalated_at, strict=False):
            labels = {**alert.labels, "severity": step.severity}
            out.append(
                Transition(
                    state=state,
                    alertname=alert.alertname,
                    labels=labels,
                    annotations=dict(alert.annotations),
                    starts_at=since,
                    ends_at=now if state is AlertState.RESOLVED else None,
                    offset=offset,
                    fingerprint=fingerprint(labels),
                    escalated_from=fp,
                )
            )
        return out

    def _flap_transition(self, change: FlapChange, offset: int, now: float) -> Transition:
        h = change.history
        since = h.flapping_since if h.flapping_since is not None else now
        return Transition(
            state=AlertState.FLAPPING if change.started else AlertState.FLAPPING_STOPPED,
            alertname=h.alertname,
            labels=dict(h.labels),
            annotations={**h.annotations, "flap_percent": f"{h.percent:.1f}"},
            starts_at=since,
            ends_at=None if change.started else now,
            offset=offset,
            fingerprint=change.fingerprint,
        )

    def resume(self, group: str, offset: int = 0) -> list[Transition]:
        """What receivers were told is active in ``group``, to tell them again when its state
        was restored (a restart, a partition taken over): its flapping alerts (``flapping``
        since they started), then its firing alerts at the time they fired, with their
        escalations. ``offset`` is given to the transitions; nothing changes here."""
        out: list[Transition] = []
        if self.flapping is not None:
            for change in self.flapping.flapping_in(group):
                since = change.history.flapping_since
                out.append(self._flap_transition(change, offset, since or 0.0))
        for fp in sorted(self._groups.get(group, ())):
            alert = self._alerts[fp]
            if alert.state is AlertState.FIRING:
                fired = alert.fired_at if alert.fired_at is not None else alert.active_at
                out.append(self._transition(alert, AlertState.FIRING, fp, offset, fired))
                out.extend(self._escalated(alert, AlertState.FIRING, fp, offset, fired))
        return out

    def _drop(self, fp: str) -> None:
        alert = self._alerts.pop(fp)
        self._groups[alert.group].discard(fp)

    def has_alerts(self, group: str) -> bool:
        """Whether ``group`` has a pending or firing alert."""
        return bool(self._groups.get(group))

    def forget_group(self, group: str) -> None:
        """Drop everything kept for ``group`` (its alerts and flap histories), as for a model
        version no longer monitored: no transition is reported."""
        for fp in list(self._groups.pop(group, ())):
            del self._alerts[fp]
        if self.flapping is not None:
            self.flapping.restore({}, group)

    def snapshot(self) -> dict[str, Any]:
        """JSON-friendly state: every pending and firing alert with its timers (and the flap
        histories when flap detection is on)."""
        state: dict[str, Any] = {
            "alerts": {fp: {**asdict(a), "state": a.state.value} for fp, a in self._alerts.items()}
        }
        if self.flapping is not None:
            state["flapping"] = self.flapping.snapshot()
        return state

    def snapshot_group(self, group: str) -> dict[str, Any]:
        """Like :meth:`snapshot`, for the alerts of one group only."""
        state: dict[str, Any] = {
            "alerts": {
                fp: {**asdict(self._alerts[fp]), "state": self._alerts[fp].state.value}
                for fp in sorted(self._groups.get(group, ()))
            }
        }
        if self.flapping is not None:
            state["flapping"] = self.flapping.snapshot(group)
        return state

    def restore_group(self, group: str, state: dict[str, Any]) -> None:
        """Replace one group's alerts with those of :meth:`snapshot_group`."""
        for fp in list(self._groups.get(group, ())):
            self._drop(fp)
        for fp, raw in state.get("alerts", {}).items():
            alert = ActiveAlert(**{**raw, "state": AlertState(raw["state"])})
            self._alerts[fp] = alert
            self._groups.setdefault(alert.group, set()).add(fp)
        if self.flapping is not None:
            self.flapping.restore(state.get("flapping", {}), group)

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the state with one taken by :meth:`snapshot`."""
        self._alerts = {}
        self._groups = {}
        for fp, raw in state.get("alerts", {}).items():
            alert = ActiveAlert(**{**raw, "state": AlertState(raw["state"])})
            self._alerts[fp] = alert
            self._groups.setdefault(alert.group, set()).add(fp)
        if self.flapping is not None:
            self.flapping.restore(state.get("flapping", {}))
