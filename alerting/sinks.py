"""Where alert state changes go. Here: JSON lines (a file or any binary stream)."""

from __future__ import annotations

from typing import BinaryIO, Protocol

import orjson

from alerting.types import Transition


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
