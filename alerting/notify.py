"""Wiring for the composition root: tracker, router and dispatcher from the settings.

``Notifier`` is an :class:`alerting.sinks.AlertSink`: give it the transitions the pipeline
returns (``replay``'s ``sink``, the live worker's loop) and it routes them and queues the
notifications, never blocking on the network::

    rules = rule_set_from(settings.alerts)
    tracker = build_tracker(rules, settings.notifications)       # flap detection on
    notifier = Notifier.from_settings(settings.notifications, rules)
    notifier.send(pipeline.process_lines(lines, offset))
    ...
    notifier.close(timeout=10)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from alerting.dispatch import Dispatcher
from alerting.flapping import FlapDetector
from alerting.router import Router, RouterConfig, default_runbook_base
from alerting.rules import RuleSet
from alerting.settings import NotificationSettings
from alerting.state import AlertTracker
from alerting.transport import HttpTransport
from alerting.types import Notification, Transition


def build_tracker(rules: RuleSet, settings: NotificationSettings) -> AlertTracker:
    """The alert state machine with the configured flap detection."""
    flap = settings.flapping.flap_settings()
    return AlertTracker(rules, FlapDetector(flap) if flap is not None else None)


def build_router(settings: NotificationSettings, rules: RuleSet) -> Router:
    """The router for the configured tree and receivers."""
    config = RouterConfig(
        runbook_base_url=settings.runbook_base_url or default_runbook_base(),
        external_url=settings.external_url,
        transient_receivers=frozenset(r.name for r in settings.receivers if r.send_transient),
        flapping_severity=settings.flapping.severity,
    )
    route = settings.route.build() if settings.route is not None else None
    return Router(route, rules, config, [r.name for r in settings.receivers])


class Notifier:
    """Router + dispatcher behind the ``AlertSink`` interface (``send`` / ``close``).

    Parameters
    ----------
    router
        Decides notifications (no I/O).
    dispatcher
        Delivers them (background threads).
    close_timeout
        Seconds ``close()`` waits for undelivered notifications (10).
    """

    def __init__(self, router: Router, dispatcher: Dispatcher, close_timeout: float = 10.0):
        self.router = router
        self.dispatcher = dispatcher
        self.close_timeout = close_timeout
        self.notifications = 0

    @classmethod
    def from_settings(
        cls,
        settings: NotificationSettings,
        rules: RuleSet,
        *,
        transport: HttpTransport | None = None,
    ) -> Notifier:
        """Router and dispatcher from the settings (secrets are read now)."""
        return cls(
            build_router(settings, rules),
            Dispatcher.from_settings(settings, transport=transport),
        )

    def send(self, transitions: list[Transition]) -> None:
        """Route the state changes and queue the notifications."""
        notes: list[Notification] = self.router.route_transitions(transitions)
        self.notifications += len(notes)
        if notes:
            self.dispatcher.send(notes)

    def close(self) -> None:
        """Flush for at most ``close_timeout`` seconds and stop the delivery threads."""
        self.dispatcher.close(self.close_timeout)

    def resume(self, transitions: list[Transition]) -> None:
        """Tell the receivers that keep alerts (Alertmanager) again about alerts whose state
        was restored (:meth:`alerting.state.AlertTracker.resume`); other receivers were told
        once and are not told again."""
        notes = self.router.resumed(transitions)
        if notes:
            self.dispatcher.resume(notes)

    def withdraw(self, owned: Callable[[Mapping[str, str]], bool]) -> None:
        """Forget the alerts whose labels ``owned`` selects, and stop re-sending them to
        Alertmanager, without resolving them: their model versions moved to another worker,
        which takes them over (:meth:`resume`)."""
        self.dispatcher.withdraw(self.router.withdraw(owned))

    def snapshot(self) -> dict[str, Any]:
        """The router's state (JSON)."""
        return self.router.snapshot()

    def restore(self, state: Mapping[str, Any]) -> None:
        """Restore the router and re-send what is still firing to Alertmanager."""
        self.router.restore(state)
        self.dispatcher.resume(self.router.resume())
