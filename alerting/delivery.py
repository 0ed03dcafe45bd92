"""The delivery loop shared by HTTP receivers: one background thread per endpoint URL.

The caller's thread only puts notifications into a bounded in-memory queue under a lock and
returns (never I/O, never a wait on the network). The endpoint's thread takes a batch, POSTs it
outside the lock and settles the outcome:

* 2xx: delivered (``sent``);
* a network error or 5xx: kept, and retried after an exponential backoff with jitter
  (``retried``);
* any other status (4xx): not retried, logged with the response body (``failed``).

Subclasses decide what the queue holds (the latest state per alert for Alertmanager, a FIFO for
webhooks) and what a batch looks like.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Generic, TypeVar

from alerting.settings import DeliverySettings
from alerting.transport import HttpResponse, HttpTransport, TransportError
from alerting.types import Notification

log = logging.getLogger("driftwatch.notifications")

T = TypeVar("T")


@dataclass(slots=True)
class DeliveryStats:
    """Counters of one endpoint (or their sum over a receiver).

    ``sent``: alerts in requests answered 2xx (re-sends included); ``failed``: alerts in
    requests answered 4xx (not retried); ``retried``: requests repeated after a network error
    or 5xx; ``dropped``: notifications discarded because the queue was full or still
    undelivered when the dispatcher closed.
    """

    sent: int = 0
    failed: int = 0
    retried: int = 0
    dropped: int = 0

    def __add__(self, other: DeliveryStats) -> DeliveryStats:
        return DeliveryStats(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        )


class Backoff:
    """Exponential backoff with jitter: the n-th wait is ``d = min(maximum, initial * 2**n)``
    scaled by a random factor in [0.5, 1], so retries of many monitors spread out.

    >>> b = Backoff(1.0, 8.0, random.Random(0))
    >>> [round(b.next(), 2) for _ in range(5)]
    [0.92, 1.76, 2.84, 5.04, 6.05]
    """

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        """The next wait in seconds."""
        d = min(self.maximum, self.initial * 2.0**self.attempt)
        self.attempt += 1
        return d * (0.5 + 0.5 * self.rng.random())

    def reset(self) -> None:
        """After a success: start again from ``initial``."""
        self.attempt = 0


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    """What one request carries: the queue items it settles and the request body."""

    items: Sequence[T]
    body: bytes
    count: int
    resend: bool = False


class Endpoint(ABC, Generic[T]):
    """One URL with its queue, thread, backoff and counters (see the module docstring).

    Parameters
    ----------
    name
        Receiver name (for logs and thread names).
    url
        Where to POST.
    transport
        The HTTP client.
    headers
        Sent with every request (may hold credentials; never logged).
    timeout
        Seconds per request.
    delivery
        Queue capacity and backoff.
    """

    def __init__(
        self,
        name: str,
        url: str,
        transport: HttpTransport,
        headers: dict[str, str],
        timeout: float,
        delivery: DeliverySettings,
        *,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.transport = transport
        self.headers = {"Content-Type": "application/json", **headers}
        self.timeout = timeout
        self.capacity = delivery.queue_capacity
        self.wall = wall
        self.backoff = Backoff(delivery.initial_backoff, delivery.max_backoff, rng)
        self.stats = DeliveryStats()
        self._cond = threading.Condition()
        self._retry_at = 0.0
        self._closing = False
        self._deadline = 0.0
        self._thread = threading.Thread(
            target=self._run, name=f"driftwatch-notify-{name}", daemon=True
        )
        self._thread.start()

    # -- the caller's side -----------------------------------------------------------------

    def offer(self, notes: Sequence[Notification]) -> None:
        """Queue notifications; never blocks on the network."""
        with self._cond:
            for note in notes:
                self._accept(note)
            self._cond.notify()

    def close(self, deadline: float) -> bool:
        """Deliver what is queued until ``deadline`` (``time.monotonic``), then stop; True if
        nothing undelivered was left (the rest is counted as dropped)."""
        with self._cond:
            self._closing = True
            self._deadline = deadline
            self._cond.notify()
        self._thread.join(max(0.0, deadline - time.monotonic()) + self.timeout + 1.0)
        with self._cond:
            left = self._undelivered()
            self.stats.dropped += left
            self._discard()
            return left == 0

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = None
                while batch is None:
                    now = time.monotonic()
                    if self._closing and (self._undelivered() == 0 or now >= self._deadline):
                        return
                    if now >= self._retry_at:
                        batch = self._take(now, final=self._closing)
                        if batch is not None:
                            break
                    waits = [self._due(now) - now]
                    if now < self._retry_at:
                        waits.append(self._retry_at - now)
                    if self._closing:
                        waits.append(self._deadline - now)
                    self._cond.wait(max(0.001, min(3600.0, *waits)))
            self._settle(batch, self._post(batch))

    def _post(self, batch: Batch[T]) -> HttpResponse | TransportError:
        try:
            return self.transport.post(self.url, batch.body, self.headers, self.timeout)
        except TransportError as exc:
            return exc

    def _settle(self, batch: Batch[T], result: HttpResponse | TransportError) -> None:
        now = time.monotonic()
        with self._cond:
            if isinstance(result, HttpResponse) and 200 <= result.status < 300:
                self.stats.sent += batch.count
                self.backoff.reset()
                self._retry_at = 0.0
                self._delivered(batch, now)
            elif isinstance(result, TransportError) or result.status >= 500:
                self.stats.retried += 1
                wait = self.backoff.next()
                self._retry_at = now + wait
                why = str(result) if isinstance(result, TransportError) else _answer(result)
                log.warning(
                    "%s: %d alerts not delivered to %s (%s); retry in %.1f s",
                    self.name,
                    batch.count,
                    self.url,
                    why,
                    wait,
                )
            else:
                self.stats.failed += batch.count
                self.backoff.reset()
                self._retry_at = 0.0
                log.error(
                    "%s: %s rejected %d alerts, not retrying: %s",
                    self.name,
                    self.url,
                    batch.count,
                    _answer(result),
                )
                self._delivered(batch, now)

    # -- what subclasses decide ----------------------------------------------------------------

    @abstractmethod
    def _accept(self, note: Notification) -> None:
        """Put one notification in the queue (under the lock)."""

    @abstractmethod
    def _take(self, now: float, final: bool) -> Batch[T] | None:
        """The next request, or None if nothing is due (under the lock)."""

    @abstractmethod
    def _delivered(self, batch: Batch[T], now: float) -> None:
        """Remove what ``batch`` settled from the queue (under the lock)."""

    @abstractmethod
    def _undelivered(self) -> int:
        """How many queued notifications still wait for delivery."""

    @abstractmethod
    def _discard(self) -> None:
        """Forget everything queued (after close)."""

    def _due(self, now: float) -> float:
        """When the endpoint wants to send next without new input (monotonic time)."""
        return now + 3600.0


def _answer(resp: HttpResponse) -> str:
    text = resp.body[:2000].decode("utf-8", "replace").strip()
    return f"HTTP {resp.status}: {text}" if text else f"HTTP {resp.status}"
