"""Generic webhook receiver: every notification, in order, as JSON modelled on Alertmanager's.

The body of each ``POST`` (``version`` ``driftwatch/1``)::

    {"version": "driftwatch/1", "receiver": "chat", "status": "firing",
     "commonLabels": {...}, "commonAnnotations": {...}, "externalURL": "...",
     "alerts": [{"status": "firing", "kind": "alert", "labels": {...}, "annotations": {...},
                 "startsAt": "...", "endsAt": "0001-01-01T00:00:00Z",
                 "generatorURL": "...", "fingerprint": "..."}]}

``status`` is ``firing`` if any alert in the request fires; firing alerts carry Alertmanager's
zero ``endsAt``; ``kind`` is ``alert``, ``flapping`` or ``transient``. Times are event time.
Consumers should be idempotent (key on fingerprint, status and startsAt): a request that timed
out after the server acted on it is sent again.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Mapping

import orjson

from alerting.delivery import Batch, DeliveryStats, Endpoint
from alerting.settings import DeliverySettings, WebhookSettings
from alerting.timefmt import iso
from alerting.transport import HttpTransport
from alerting.types import NoticeKind, Notification

ZERO_TIME = "0001-01-01T00:00:00Z"


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def webhook_body(receiver: str, notes: list[Notification], external_url: str = "") -> bytes:
    """The JSON body for ``notes`` (see the module docstring)."""
    alerts = [
        {
            "status": n.status,
            "kind": n.kind.value,
            "labels": n.labels,
            "annotations": n.annotations,
            "startsAt": iso(n.starts_at),
            "endsAt": iso(n.ends_at) if n.ends_at is not None else ZERO_TIME,
            "generatorURL": n.generator_url,
            "fingerprint": n.fingerprint,
        }
        for n in notes
    ]
    return orjson.dumps(
        {
            "version": "driftwatch/1",
            "receiver": receiver,
            "status": "firing" if any(n.status == "firing" for n in notes) else "resolved",
            "commonLabels": _common([n.labels for n in notes]),
            "commonAnnotations": _common([n.annotations for n in notes]),
            "externalURL": external_url,
            "alerts": alerts,
        }
    )


class WebhookReceiver(Endpoint[Notification]):
    """A generic webhook (see the module docstring); a FIFO queue of at most
    ``delivery.queue_capacity`` notifications, the oldest dropped first when full."""

    stateful = False

    def __init__(
        self,
        name: str,
        settings: WebhookSettings,
        transport: HttpTransport,
        headers: Mapping[str, str],
        delivery: DeliverySettings,
        *,
        external_url: str = "",
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.external_url = external_url
        self._queue: deque[Notification] = deque()
        super().__init__(
            name, settings.url, transport, dict(headers), settings.timeout, delivery,
            wall=wall, rng=rng,
        )  # fmt: skip

    def _accept(self, note: Notification) -> None:
        if note.kind is NoticeKind.TRANSIENT and not self.settings.send_transient:
            return
        resolved = note.status == "resolved" and note.kind is not NoticeKind.TRANSIENT
        if resolved and not self.settings.send_resolved:
            return
        if len(self._queue) >= self.capacity:
            self._queue.popleft()
            self.stats.dropped += 1
        self._queue.append(note)

    def _take(self, now: float, final: bool) -> Batch[Notification] | None:
        if not self._queue:
            return None
        n = self.settings.max_alerts or len(self._queue)
        notes = [self._queue[i] for i in range(min(n, len(self._queue)))]
        return Batch(notes, webhook_body(self.name, notes, self.external_url), len(notes))

    def _delivered(self, batch: Batch[Notification], now: float) -> None:
        for note in batch.items:
            if self._queue and self._queue[0] is note:
                self._queue.popleft()

    def _undelivered(self) -> int:
        return len(self._queue)

    def _discard(self) -> None:
        self._queue.clear()

    def delivery_stats(self) -> DeliveryStats:
        """The counters (one endpoint)."""
        return self.stats
