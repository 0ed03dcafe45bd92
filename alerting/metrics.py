"""Prometheus metrics of notification delivery, as a collector read at scrape time.

Register it on the application's registry (never the global one)::

    registry.register(NotificationCollector(notifier))

Families (all counters since start; bounded labels: receiver names and alert names only):

* ``driftwatch_notifications_sent_total{receiver}``: alerts accepted (2xx), re-sends included;
* ``driftwatch_notifications_failed_total{receiver}``: alerts rejected with 4xx, not retried;
* ``driftwatch_notifications_retried_total{receiver}``: requests repeated after a network
  error or 5xx;
* ``driftwatch_notifications_dropped_total{receiver}``: notifications discarded (queue full,
  or undelivered at shutdown);
* ``driftwatch_alert_transients_total{alertname}``: conditions that cleared before ``for``
  (never notified);
* ``driftwatch_alert_flapping_suppressed_total{alertname}``: fire/resolve changes not told
  because the alert was flapping.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from alerting.notify import Notifier

_DELIVERY = {
    "sent": "Alerts delivered to a receiver (2xx answers), re-sends included.",
    "failed": "Alerts a receiver rejected with a 4xx answer (not retried).",
    "retried": "Requests repeated after a network error or a 5xx answer.",
    "dropped": "Notifications discarded: queue full, or undelivered at shutdown.",
}


class NotificationCollector(Collector):
    """Reads a :class:`~alerting.notify.Notifier`'s counters at every scrape."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def collect(self) -> Iterator[Metric]:
        """The families listed in the module docstring."""
        stats = self.notifier.dispatcher.stats()
        for field, doc in _DELIVERY.items():
            family = CounterMetricFamily(
                f"driftwatch_notifications_{field}", doc, labels=["receiver"]
            )
            for receiver, s in sorted(stats.items()):
                family.add_metric([receiver], getattr(s, field))
            yield family
        router = self.notifier.router
        for name, doc, counts in (
            ("alert_transients", "Alert conditions that cleared before `for`.", router.transients),
            (
                "alert_flapping_suppressed",
                "Alert state changes not notified while the alert was flapping.",
                router.suppressed,
            ),
        ):
            family = CounterMetricFamily(f"driftwatch_{name}", doc, labels=["alertname"])
            for alertname, n in sorted(counts.items()):
                family.add_metric([alertname], n)
            yield family
