"""The dispatcher: hands each notification to its receiver without blocking the caller.

Built from :class:`alerting.settings.NotificationSettings`: one
:class:`~alerting.alertmanager.AlertmanagerReceiver` (one thread per URL), one
:class:`~alerting.webhook.WebhookReceiver` (one thread) or one
:class:`~alerting.sinks.NotificationLog` (synchronous local append) per configured receiver.
``send`` only queues; ``close(timeout)`` flushes for at most ``timeout`` seconds.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import ExitStack
from typing import BinaryIO, Protocol

from alerting.alertmanager import AlertmanagerReceiver
from alerting.delivery import DeliveryStats
from alerting.settings import NotificationSettings, ReceiverSettings
from alerting.sinks import NotificationLog
from alerting.transport import HttpTransport, UrllibTransport, auth_headers, ssl_context
from alerting.types import Notification
from alerting.webhook import WebhookReceiver

log = logging.getLogger("driftwatch.notifications")


class Receiver(Protocol):
    """What the dispatcher drives; ``stateful`` receivers keep alerts alive (Alertmanager)."""

    stateful: bool

    def offer(self, notes: list[Notification]) -> None:
        """Queue (or write) notifications; must not block on the network."""

    def close(self, deadline: float) -> bool:
        """Flush until ``deadline`` (``time.monotonic``); True if nothing was left."""
        ...

    def delivery_stats(self) -> DeliveryStats:
        """Counters."""
        ...


class Dispatcher:
    """Delivers notifications to named receivers (see the module docstring).

    Parameters
    ----------
    receivers
        Receivers by name, as the router names them.
    """

    def __init__(self, receivers: Mapping[str, Receiver], *, owned: ExitStack | None = None):
        self.receivers = dict(receivers)
        self.unknown = 0
        self._owned = owned or ExitStack()
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: NotificationSettings,
        *,
        transport: HttpTransport | None = None,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> Dispatcher:
        """Receivers from the settings. Secrets are read now (a missing one raises
        :class:`alerting.settings.SecretError` naming its source). ``transport`` replaces the
        urllib client of every HTTP receiver (tests)."""
        stack = ExitStack()
        receivers: dict[str, Receiver] = {}
        try:
            for r in settings.receivers:
                receivers[r.name] = _build(r, settings, transport, stack, wall, rng)
        except BaseException:
            for built in receivers.values():
                built.close(time.monotonic())
            stack.close()
            raise
        return cls(receivers, owned=stack)

    def send(self, notifications: Iterable[Notification]) -> None:
        """Queue notifications for their receivers; returns at once."""
        by_receiver: dict[str, list[Notification]] = defaultdict(list)
        for n in notifications:
            by_receiver[n.receiver].append(n)
        for name, notes in by_receiver.items():
            receiver = self.receivers.get(name)
            if receiver is None:
                self.unknown += len(notes)
                log.error("no receiver named %s; %d notifications dropped", name, len(notes))
                continue
            receiver.offer(notes)

    def resume(self, notifications: Iterable[Notification]) -> None:
        """After a restart: give the still-firing alerts (``Router.resume()``) to the
        receivers that keep alerts alive (Alertmanager); others are not told again."""
        self.send(
            n for n in notifications if getattr(self.receivers.get(n.receiver), "stateful", 0)
        )

    def withdraw(self, fingerprints: Collection[str]) -> None:
        """Have the receivers that keep alerts alive stop re-sending these (their model
        versions moved to another worker, which tells them from now on)."""
        for receiver in self.receivers.values():
            withdraw = getattr(receiver, "withdraw", None)
            if withdraw is not None:
                withdraw(fingerprints)

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what is queued for at most ``timeout`` seconds in total, stop the threads
        and close files this dispatcher opened. True if nothing was left undelivered."""
        if self._closed:
            return True
        self._closed = True
        deadline = time.monotonic() + timeout
        try:
            return all([r.close(deadline) for r in self.receivers.values()])
        finally:
            self._owned.close()

    def stats(self) -> dict[str, DeliveryStats]:
        """Counters per receiver."""
        return {name: r.delivery_stats() for name, r in self.receivers.items()}

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _build(
    r: ReceiverSettings,
    settings: NotificationSettings,
    transport: HttpTransport | None,
    stack: ExitStack,
    wall: Callable[[], float],
    rng: random.Random | None,
) -> Receiver:
    delivery = settings.delivery
    if r.alertmanager is not None:
        am = r.alertmanager
        client = transport or UrllibTransport(ssl_context(am.tls))
        return AlertmanagerReceiver(
            r.name, am, client, auth_headers(am), delivery, wall=wall, rng=rng
        )
    if r.webhook is not None:
        wh = r.webhook
        client = transport or UrllibTransport(ssl_context(wh.tls))
        return WebhookReceiver(
            r.name,
            wh,
            client,
            auth_headers(wh),
            delivery,
            external_url=settings.external_url,
            wall=wall,
            rng=rng,
        )
    assert r.log is not None
    stream: BinaryIO | None = None
    if r.log.path is not None:
        stream = stack.enter_context(open(r.log.path, "ab"))  # noqa: SIM115
    return NotificationLog(r.name, stream, send_transient=r.log.send_transient)
