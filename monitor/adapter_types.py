"""The parts of the Kafka adapter's contract that other modules name: the message it reads,
the observer it tells (metrics and traces) and its own counts (:mod:`monitor.kafka_adapter`)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from alerting.types import Transition
from monitor.events import Rejection
from monitor.fastdecode import AnyEvent

__all__ = ["AdapterStats", "BatchObserver", "Message"]


class Message(Protocol):
    """The parts of a Kafka message the adapter reads."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...


class BatchObserver(Protocol):
    """Told about each message around its processing (metrics and traces; see
    ``monitor.http_server.Observability``). Must not block."""

    def begin(self, msg: Message, events: Sequence[AnyEvent | Rejection], size: int) -> None:
        """The message's valid events are about to be processed."""

    def begin_batch(
        self,
        msgs: Sequence[Message],
        events: Sequence[AnyEvent],
        positions: Sequence[int],
        size: int,
    ) -> None:
        """The events of a batch of messages of one partition are about to be processed."""

    def alerts(self, transitions: list[Transition]) -> list[Transition]:
        """The state changes it decided, before sinks see them (may annotate them)."""
        ...

    def end(self, accepted: int, rejected: int, error: BaseException | None) -> None:
        """Processing finished (``error`` if it raised)."""


@dataclass(slots=True)
class AdapterStats:
    """Counts of the adapter itself (the pipeline counts events)."""

    messages: int = 0
    #: Dead letters written (confirmed by Kafka), and those of them that had to be cut (see
    #: :class:`~monitor.dead_letters.DeadLetterWriter`).
    dead_letters: int = 0
    dead_letters_truncated: int = 0
    #: Attempts to write a dead letter that failed (each is retried; the source waits).
    dead_letter_failures: int = 0
    #: Messages rejected as ``internal_error`` (an exception escaped their handling).
    internal_errors: int = 0
    acked: int = 0
    checkpoints: int = 0
    #: Times streams checkpointed their collected events to keep a partition's unacknowledged
    #: messages within ``kafka.max_unacked_messages``.
    collected_checkpoints: int = 0
    started: float = field(default_factory=time.time)


#: Input positions of Kafka messages: ``offset << INDEX_BITS | index`` (index within an
#: envelope), so an envelope may straddle a window.
INDEX_BITS = 16
MAX_ENVELOPE = (1 << INDEX_BITS) - 1

#: A dead letter to write: the source message, the body, why, and the envelope index.
Letter = tuple[Message, bytes, Rejection, int | None]


def kafka_time(msg: Message) -> float:
    """The message's Kafka timestamp in epoch seconds (Faust gives seconds), NaN without one
    (a message of the old format has -1; test doubles have none)."""
    ts = getattr(msg, "timestamp", None)
    if isinstance(ts, int | float) and not isinstance(ts, bool) and ts > 0:
        return float(ts)
    return math.nan
