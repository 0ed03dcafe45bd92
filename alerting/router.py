"""The router: alert state changes in, notifications per receiver out, and no I/O.

It reads the tracker's transitions in order and decides what people are told:

* ``firing`` and ``resolved`` become alert notifications, enriched with ``runbook_url``;
* ``pending`` is never told; a ``transient`` (pending that cleared before ``for``) is counted
  per alert name in :attr:`Router.transients` and told only to receivers that ask for
  transients (log receivers), never paged;
* ``flapping`` becomes one notification of its own (the alert's labels plus
  ``flapping="true"``), and while an alert flaps its fire/resolve changes are suppressed
  (counted in :attr:`Router.suppressed`): what receivers were last told about it stays as it
  was, as in Nagios. ``flapping_stopped`` resolves the flapping notification and then tells
  the alert's current state if it differs from what was last told.

Receivers come from the routing tree (:class:`alerting.routing.Route`). The router's state is
JSON (:meth:`Router.snapshot` / :meth:`Router.restore`), so a restart neither repeats nor
forgets a notification.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alerting.fingerprint import fingerprint
from alerting.routing import Route
from alerting.rules import RuleSet, Severity
from alerting.types import AlertState, NoticeKind, Notification, Transition


def default_runbook_base() -> str:
    """This repository's ``deploy/runbooks/`` as a ``file://`` URL when it exists (a source
    checkout), else the relative path ``deploy/runbooks/``."""
    runbooks = Path(__file__).resolve().parent.parent / "deploy" / "runbooks"
    if runbooks.is_dir():
        return runbooks.as_uri() + "/"
    return "deploy/runbooks/"


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """What the router needs besides the tree.

    Parameters
    ----------
    runbook_base_url
        ``runbook_url`` = this + alert name + ``.md`` unless the rule names its own runbook.
    external_url
        Where people reach this monitor; ``generatorURL`` = this + ``/alerts/<fingerprint>``.
    transient_receivers
        Receivers that are told about transients (the others never are).
    flapping_severity
        Severity of flapping notifications; None keeps the alert's own.
    """

    runbook_base_url: str = ""
    external_url: str = "http://localhost:9464"
    transient_receivers: frozenset[str] = frozenset()
    flapping_severity: Severity | None = None


def _transition_json(t: Transition) -> dict[str, Any]:
    return {**asdict(t), "state": t.state.value}


def _transition_from(raw: Mapping[str, Any]) -> Transition:
    return Transition(**{**raw, "state": AlertState(raw["state"])})


class Router:
    """Decides notifications per receiver (see the module docstring).

    Parameters
    ----------
    route
        The routing tree; None sends everything to ``default_receivers``.
    rules
        Alert rules, for per-alert runbook URLs.
    config
        Runbook base URL, external URL, which receivers want transients, flapping severity.
    default_receivers
        Receivers used when there is no tree (all configured receivers).
    """

    def __init__(
        self,
        route: Route | None = None,
        rules: RuleSet | None = None,
        config: RouterConfig | None = None,
        default_receivers: Iterable[str] = (),
    ) -> None:
        self.route = route
        self.rules = rules or RuleSet()
        self.config = config or RouterConfig(runbook_base_url=default_runbook_base())
        self.default_receivers = list(default_receivers)
        self.transients: Counter[str] = Counter()
        self.suppressed: Counter[str] = Counter()
        self._firing: dict[str, Transition] = {}
        self._told: dict[str, Transition] = {}
        self._flapping: dict[str, Transition] = {}

    # -- decisions ---------------------------------------------------------------------------

    def route_transitions(self, transitions: Iterable[Transition]) -> list[Notification]:
        """Notifications for a batch of state changes, in order."""
        out: list[Notification] = []
        for t in transitions:
            self._one(t, out)
        return out

    def is_flapping(self, fp: str) -> bool:
        """Whether the alert with fingerprint ``fp`` is flapping."""
        return fp in self._flapping

    def _one(self, t: Transition, out: list[Notification]) -> None:
        base = t.escalated_from or t.fingerprint
        state = t.state
        if state is AlertState.TRANSIENT:
            self.transients[t.alertname] += 1
            self._emit(t, NoticeKind.TRANSIENT, "resolved", out)
        elif state is AlertState.FIRING:
            self._firing[t.fingerprint] = t
            if base in self._flapping:
                self.suppressed[t.alertname] += 1
            elif t.fingerprint not in self._told:  # a re-delivered input decides it again
                self._tell_firing(t, out)
        elif state is AlertState.RESOLVED:
            self._firing.pop(t.fingerprint, None)
            if base in self._flapping:
                self.suppressed[t.alertname] += 1
            elif t.fingerprint in self._told:
                del self._told[t.fingerprint]
                self._emit(t, NoticeKind.ALERT, "resolved", out)
        elif state is AlertState.FLAPPING:
            self._flapping[t.fingerprint] = t
            self._emit(t, NoticeKind.FLAPPING, "firing", out)
        elif state is AlertState.FLAPPING_STOPPED:
            self._flapping.pop(t.fingerprint, None)
            self._emit(t, NoticeKind.FLAPPING, "resolved", out)
            self._sync(t, out)

    def _tell_firing(self, t: Transition, out: list[Notification]) -> None:
        self._told[t.fingerprint] = t
        self._emit(t, NoticeKind.ALERT, "firing", out)

    def _sync(self, stop: Transition, out: list[Notification]) -> None:
        """After flapping stops, tell the alert's (and its escalations') current state."""
        base = stop.fingerprint
        related = {
            fp
            for fp, t in (*self._firing.items(), *self._told.items())
            if (t.escalated_from or fp) == base
        }
        for fp in sorted(related):
            firing, told = self._firing.get(fp), self._told.get(fp)
            if firing is not None and told is None:
                self._tell_firing(firing, out)
            elif firing is None and told is not None:
                del self._told[fp]
                resolved = Transition(
                    state=AlertState.RESOLVED,
                    alertname=told.alertname,
                    labels=told.labels,
                    annotations=told.annotations,
                    starts_at=told.starts_at,
                    ends_at=stop.ends_at,
                    offset=stop.offset,
                    fingerprint=fp,
                    escalated_from=told.escalated_from,
                )
                self._emit(resolved, NoticeKind.ALERT, "resolved", out)

    def resumed(self, transitions: Iterable[Transition]) -> list[Notification]:
        """Take what :meth:`alerting.state.AlertTracker.resume` gives (alerts whose state was
        restored) as told, and return the notifications that tell the receivers again:
        flapping alerts, then firing ones not suppressed by flapping. Alertmanager keeps
        alerts only in memory and for ``4 x resend interval``; a restarted worker must send
        them again at once, with their original ``startsAt``."""
        transitions = list(transitions)
        out: list[Notification] = []
        for t in transitions:
            if t.state is AlertState.FLAPPING:
                self._flapping[t.fingerprint] = t
                self._emit(t, NoticeKind.FLAPPING, "firing", out)
        for t in transitions:
            if t.state is AlertState.FIRING:
                self._firing[t.fingerprint] = t
                if (t.escalated_from or t.fingerprint) not in self._flapping:
                    self._tell_firing(t, out)
        return out

    def withdraw(self, owned: Callable[[Mapping[str, str]], bool]) -> list[str]:
        """Forget the alerts whose labels ``owned`` selects (their model versions moved to
        another worker) without notifying anything; returns the fingerprints receivers know
        them by, for :meth:`alerting.dispatch.Dispatcher.withdraw`."""
        gone: list[str] = []
        for table in (self._firing, self._told):
            for fp in [fp for fp, t in table.items() if owned(t.labels)]:
                del table[fp]
                gone.append(fp)
        for fp in [fp for fp, t in self._flapping.items() if owned(t.labels)]:
            t = self._flapping.pop(fp)
            gone.append(fp)
            gone.append(fingerprint({**t.labels, "flapping": "true"}))
            if self.config.flapping_severity is not None:
                sev = {**t.labels, "flapping": "true", "severity": self.config.flapping_severity}
                gone.append(fingerprint(sev))
        return sorted(set(gone))

    # -- building notifications --------------------------------------------------------------

    def runbook_url(self, alertname: str) -> str:
        """The runbook of ``alertname``: the rule's own, or base URL + name + ``.md``."""
        own = self.rules.rule(alertname).runbook
        return own or f"{self.config.runbook_base_url}{alertname}.md"

    def _emit(self, t: Transition, kind: NoticeKind, status: str, out: list[Notification]) -> None:
        labels = dict(t.labels)
        annotations = dict(t.annotations)
        annotations.setdefault("runbook_url", self.runbook_url(t.alertname))
        fp = t.fingerprint
        if kind is NoticeKind.FLAPPING:
            labels["flapping"] = "true"
            if self.config.flapping_severity is not None:
                labels["severity"] = self.config.flapping_severity
            fp = fingerprint(labels)
            annotations["summary"] = self._flap_summary(t, status)
            annotations["description"] = (
                f"{annotations['summary']} Changes of this alert are not notified one by one "
                "while it flaps. Last condition: " + t.annotations.get("description", "n/a")
            )
        receivers = self.route.receivers(labels) if self.route else self.default_receivers
        if kind is NoticeKind.TRANSIENT:
            receivers = [r for r in receivers if r in self.config.transient_receivers]
        base = self.config.external_url.rstrip("/")
        for receiver in receivers:
            out.append(
                Notification(
                    receiver=receiver,
                    kind=kind,
                    status=status,
                    alertname=t.alertname,
                    labels=labels,
                    annotations=annotations,
                    starts_at=t.starts_at,
                    ends_at=t.ends_at if status == "resolved" else None,
                    fingerprint=fp,
                    offset=t.offset,
                    generator_url=f"{base}/alerts/{quote(fp)}",
                )
            )

    @staticmethod
    def _flap_summary(t: Transition, status: str) -> str:
        what = ", ".join(f"{k}={v}" for k, v in t.labels.items() if k not in {"alertname"})
        pct = t.annotations.get("flap_percent", "?")
        if status == "firing":
            return (
                f"{t.alertname} ({what}) is flapping: {pct}% weighted state changes over the "
                "last evaluations."
            )
        return f"{t.alertname} ({what}) stopped flapping ({pct}% state changes)."

    # -- state ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """JSON-friendly state: what the tracker fires, what receivers were told, who flaps,
        and the counters."""
        return {
            "firing": {fp: _transition_json(t) for fp, t in self._firing.items()},
            "told": {fp: _transition_json(t) for fp, t in self._told.items()},
            "flapping": {fp: _transition_json(t) for fp, t in self._flapping.items()},
            "transients": dict(self.transients),
            "suppressed": dict(self.suppressed),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace the state with one taken by :meth:`snapshot`."""
        self._firing = {fp: _transition_from(r) for fp, r in state.get("firing", {}).items()}
        self._told = {fp: _transition_from(r) for fp, r in state.get("told", {}).items()}
        self._flapping = {fp: _transition_from(r) for fp, r in state.get("flapping", {}).items()}
        self.transients = Counter(state.get("transients", {}))
        self.suppressed = Counter(state.get("suppressed", {}))

    def resume(self) -> list[Notification]:
        """Firing notifications for everything receivers were told is firing (alerts and
        flapping), to hand to :meth:`alerting.dispatch.Dispatcher.resume` after a restart:
        Alertmanager keeps alerts only in memory and for ``4 x resend interval``."""
        out: list[Notification] = []
        for t in self._told.values():
            self._emit(t, NoticeKind.ALERT, "firing", out)
        for t in self._flapping.values():
            self._emit(t, NoticeKind.FLAPPING, "firing", out)
        return out
