"""Alertmanager API v2 receiver: ``POST /api/v2/alerts`` to every URL, as Prometheus does.

Per URL the queue holds the *latest* state of every alert (by fingerprint), so an Alertmanager
that is unreachable for a while gets each alert's current state when it returns, whatever
happened in between, and nothing else piles up. Each URL is delivered on its own thread, so a
dead replica never delays the other.

Timestamps (see :class:`alerting.settings.AlertmanagerSettings`): while an alert is active it
is re-sent every ``resend_interval`` with ``endsAt = now + 4 x resend_interval`` (wall clock:
Alertmanager resolves an alert by itself once ``endsAt`` passes, so this is a lease that
survives two missed re-sends, as Prometheus' ``ValidUntil``). A resolved alert is sent at once
with ``endsAt`` = the resolve time and re-sent for ``resolve_retention``. ``startsAt`` and the
resolve time follow the event clock by default, never later than the wall clock: a replay of
last month's incident shows last month's times and resolves at once, and future-dated events
cannot hold an alert open.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import orjson

from alerting.delivery import Batch, DeliveryStats, Endpoint
from alerting.settings import AlertmanagerSettings, DeliverySettings
from alerting.timefmt import iso
from alerting.transport import HttpTransport
from alerting.types import NoticeKind, Notification

API_PATH = "/api/v2/alerts"


@dataclass(slots=True)
class _Entry:
    note: Notification
    starts_at: float
    ends_at: float | None
    version: int
    resolved_mono: float | None = None


@dataclass(frozen=True, slots=True)
class _Item:
    fingerprint: str
    version: int


class AlertmanagerEndpoint(Endpoint[_Item]):
    """One Alertmanager URL (see the module docstring)."""

    def __init__(
        self,
        name: str,
        base_url: str,
        settings: AlertmanagerSettings,
        transport: HttpTransport,
        headers: dict[str, str],
        delivery: DeliverySettings,
        *,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._entries: dict[str, _Entry] = {}
        self._dirty: dict[str, int] = {}
        self._version = 0
        self._next_resend = float("inf")
        super().__init__(
            name,
            base_url.rstrip("/") + API_PATH,
            transport,
            headers,
            settings.timeout,
            delivery,
            wall=wall,
            rng=rng,
        )

    def _accept(self, note: Notification) -> None:
        if note.kind is NoticeKind.TRANSIENT:
            return
        now = self.wall()
        fp = note.fingerprint
        old = self._entries.get(fp)
        if old is None and len(self._entries) >= self.capacity and not self._evict():
            self.stats.dropped += 1
            return
        event_mode = self.settings.timestamps == "event"
        if old is not None and old.ends_at is None:
            starts = old.starts_at  # still the same activation: keep its start
        else:
            starts = min(note.starts_at, now) if event_mode else now
        ends: float | None = None
        resolved_mono = None
        if note.status == "resolved":
            end = note.ends_at if event_mode and note.ends_at is not None else now
            ends = max(min(end, now), starts + 0.001)
            resolved_mono = time.monotonic()
        self._version += 1
        self._entries[fp] = _Entry(note, starts, ends, self._version, resolved_mono)
        self._dirty[fp] = self._version
        if note.status == "firing" and self._next_resend == float("inf"):
            self._next_resend = time.monotonic() + self.settings.resend_interval

    def withdraw(self, fingerprints: Collection[str]) -> None:
        """Stop re-sending these alerts, without resolving them: another worker now owns
        them (its partitions moved) and keeps them alive in Alertmanager."""
        with self._cond:
            for fp in fingerprints:
                self._entries.pop(fp, None)
                self._dirty.pop(fp, None)

    def _evict(self) -> bool:
        """Make room by forgetting the oldest delivered resolved alert."""
        for fp, e in self._entries.items():
            if e.ends_at is not None and fp not in self._dirty:
                del self._entries[fp]
                return True
        return False

    def _due(self, now: float) -> float:
        return self._next_resend

    def _take(self, now: float, final: bool) -> Batch[_Item] | None:
        resend = not final and now >= self._next_resend
        if resend:
            fps = list(self._entries)
        elif self._dirty:
            fps = list(self._dirty)
        else:
            if now >= self._next_resend:
                self._next_resend = float("inf")
            return None
        if not fps:
            self._next_resend = float("inf")
            return None
        wall = self.wall()
        valid = wall + 4 * self.settings.resend_interval
        payload = []
        items = []
        for fp in fps:
            e = self._entries[fp]
            alert = {
                "labels": e.note.labels,
                "annotations": e.note.annotations,
                "startsAt": iso(e.starts_at),
                "endsAt": iso(e.ends_at if e.ends_at is not None else valid),
                "generatorURL": e.note.generator_url,
            }
            payload.append(alert)
            items.append(_Item(fp, e.version))
        return Batch(items, orjson.dumps(payload), len(items), resend)

    def _delivered(self, batch: Batch[_Item], now: float) -> None:
        for item in batch.items:
            if self._dirty.get(item.fingerprint) == item.version:
                del self._dirty[item.fingerprint]
        if batch.resend or self._next_resend <= now:
            self._next_resend = now + self.settings.resend_interval
        keep = self.settings.resolve_retention
        for fp in [
            fp
            for fp, e in self._entries.items()
            if e.resolved_mono is not None
            and now - e.resolved_mono >= keep
            and fp not in self._dirty
        ]:
            del self._entries[fp]
        if not self._entries:
            self._next_resend = float("inf")

    def _undelivered(self) -> int:
        return len(self._dirty)

    def _discard(self) -> None:
        self._entries.clear()
        self._dirty.clear()

    def active(self) -> list[Notification]:
        """The notifications this endpoint currently keeps alive (for tests and status)."""
        with self._cond:
            return [e.note for e in self._entries.values() if e.ends_at is None]


class AlertmanagerReceiver:
    """Every alert to every Alertmanager in ``settings.urls`` (one endpoint and thread each).

    Parameters
    ----------
    name
        The receiver's name in the routing tree.
    settings
        URLs, re-send interval, resolve retention, clock choice, HTTP options.
    transport
        The HTTP client (built from the settings' TLS options by the dispatcher).
    headers
        ``Authorization`` and the like (never logged).
    delivery
        Queue capacity and backoff.
    """

    stateful = True

    def __init__(
        self,
        name: str,
        settings: AlertmanagerSettings,
        transport: HttpTransport,
        headers: dict[str, str],
        delivery: DeliverySettings,
        *,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.endpoints = [
            AlertmanagerEndpoint(
                name, url, settings, transport, headers, delivery, wall=wall, rng=rng
            )
            for url in settings.urls
        ]

    def offer(self, notes: list[Notification]) -> None:
        """Queue for every Alertmanager."""
        for ep in self.endpoints:
            ep.offer(notes)

    def withdraw(self, fingerprints: Collection[str]) -> None:
        """Stop re-sending these alerts on every endpoint (see
        :meth:`AlertmanagerEndpoint.withdraw`)."""
        for ep in self.endpoints:
            ep.withdraw(fingerprints)

    def close(self, deadline: float) -> bool:
        """Flush every endpoint until ``deadline`` (monotonic)."""
        return all([ep.close(deadline) for ep in self.endpoints])

    def delivery_stats(self) -> DeliveryStats:
        """Counters summed over the URLs."""
        total = DeliveryStats()
        for ep in self.endpoints:
            total = total + ep.stats
        return total
