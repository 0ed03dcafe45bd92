"""Where alert state changes go: JSON lines (a file or any binary stream), memory, and the
log receiver for notifications."""

from __future__ import annotations

import logging
from typing import BinaryIO, Protocol

import orjson

from alerting.delivery import DeliveryStats
from alerting.types import NoticeKind, Notification, Transition

_log = logging.getLogger("driftwatch.notifications")


class AlertSink(Protocol):
    """Receives every alert state change; must not block for long."""

    def send(self, transitions: list[Transition]) -> None:
        """Deliver a batch of state changes."""

    def close(self) -> None:
        """Flush and release resources."""


class JsonlSink:
    """Writes one JSON object per state change (see :meth:`Transition.to_record`)."""

    def __init__(self, stream: BinaryIO, *, flush: bool = True) -> None:
        self.stream = stream
        self.flush = flush
        self.written = 0

    def send(self, transitions: list[Transition]) -> None:
        """Append the records; flushes so a tail -f shows them at once."""
        for t in transitions:
            self.stream.write(orjson.dumps(t.to_record()) + b"\n")
            self.written += 1
        if self.flush and transitions:
            self.stream.flush()

    def close(self) -> None:
        """Flush the stream (the caller owns and closes it)."""
        self.stream.flush()


class MemorySink:
    """Keeps state changes in a list (tests, the status page)."""

    def __init__(self) -> None:
        self.transitions: list[Transition] = []

    def send(self, transitions: list[Transition]) -> None:
        """Remember the batch."""
        self.transitions.extend(transitions)

    def close(self) -> None:
        """Nothing to release."""


class NotificationLog:
    """A log receiver: one JSON line per notification (:meth:`Notification.to_record`), to a
    binary stream, or to the ``driftwatch.notifications`` logger at INFO when ``stream`` is
    None. Synchronous: a local append does not block the pipeline the way a network call can.
    """

    stateful = False

    def __init__(self, name: str, stream: BinaryIO | None = None, *, send_transient: bool = True):
        self.name = name
        self.stream = stream
        self.send_transient = send_transient
        self.written = 0

    def offer(self, notes: list[Notification]) -> None:
        """Write the notifications."""
        for note in notes:
            if note.kind is NoticeKind.TRANSIENT and not self.send_transient:
                continue
            line = orjson.dumps(note.to_record())
            if self.stream is None:
                _log.info("%s", line.decode())
            else:
                self.stream.write(line + b"\n")
            self.written += 1
        if self.stream is not None and notes:
            self.stream.flush()

    def close(self, deadline: float) -> bool:
        """Flush (the stream's owner closes it)."""
        if self.stream is not None:
            self.stream.flush()
        return True

    def delivery_stats(self) -> DeliveryStats:
        """``sent`` = lines written."""
        return DeliveryStats(sent=self.written)


class FanoutSink:
    """Sends every batch to several sinks in order (e.g. a JSONL file and a notifier)."""

    def __init__(self, sinks: list[AlertSink]) -> None:
        self.sinks = list(sinks)

    def send(self, transitions: list[Transition]) -> None:
        """Hand the batch to every sink."""
        for sink in self.sinks:
            sink.send(transitions)

    def close(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()
