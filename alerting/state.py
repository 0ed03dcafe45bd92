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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from alerting.fingerprint import fingerprint
from alerting.rules import RuleSet
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


class AlertTracker:
    """State machine over all alerts (see module docstring).

    Parameters
    ----------
    rules
        ``for``, ``keep_firing_for`` and severity per alert name.
    """

    def __init__(self, rules: RuleSet | None = None) -> None:
        self.rules = rules or RuleSet()
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
        seen: set[str] = set()
        for signal in signals:
            labels = self._labels(signal)
            fp = fingerprint(labels)
            if fp in seen:
                continue
            seen.add(fp)
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
        for fp in sorted(members - seen):
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
                self._drop(fp)
        return out

    def _drop(self, fp: str) -> None:
        alert = self._alerts.pop(fp)
        self._groups[alert.group].discard(fp)

    def snapshot(self) -> dict[str, Any]:
        """JSON-friendly state: every pending and firing alert with its timers."""
        return {
            "alerts": {fp: {**asdict(a), "state": a.state.value} for fp, a in self._alerts.items()}
        }

    def snapshot_group(self, group: str) -> dict[str, Any]:
        """Like :meth:`snapshot`, for the alerts of one group only."""
        return {
            "alerts": {
                fp: {**asdict(self._alerts[fp]), "state": self._alerts[fp].state.value}
                for fp in sorted(self._groups.get(group, ()))
            }
        }

    def restore_group(self, group: str, state: dict[str, Any]) -> None:
        """Replace one group's alerts with those of :meth:`snapshot_group`."""
        for fp in list(self._groups.get(group, ())):
            self._drop(fp)
        for fp, raw in state.get("alerts", {}).items():
            alert = ActiveAlert(**{**raw, "state": AlertState(raw["state"])})
            self._alerts[fp] = alert
            self._groups.setdefault(alert.group, set()).add(fp)

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the state with one taken by :meth:`snapshot`."""
        self._alerts = {}
        self._groups = {}
        for fp, raw in state.get("alerts", {}).items():
            alert = ActiveAlert(**{**raw, "state": AlertState(raw["state"])})
            self._alerts[fp] = alert
            self._groups.setdefault(alert.group, set()).add(fp)
