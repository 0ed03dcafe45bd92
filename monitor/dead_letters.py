"""Dead letters: every input the worker cannot use, written to the dead-letter topic with why.

A dead letter is the message (or the envelope element) as it came, with headers:

* ``driftwatch-reason``: the rejection reason (``malformed_json``, ``too_large``, ...,
  ``internal_error``), ``driftwatch-error``: a message for people (at most 1,000 characters);
* ``driftwatch-source-topic``, ``driftwatch-source-partition``, ``driftwatch-source-offset``,
  and ``driftwatch-envelope-index`` for one element of an envelope;
* ``driftwatch-exception``: the class of the exception of an ``internal_error``;
* ``driftwatch-truncated: true`` and ``driftwatch-original-size`` (bytes) when the body had to
  be cut to fit Kafka's limit (``kafka.max_message_bytes``, the topic's
  ``max.message.bytes``).

:class:`DeadLetterWriter` sends them and, in :meth:`~DeadLetterWriter.confirm`, waits until
Kafka has written them; the adapter acknowledges a source message only after that. A write
that fails is retried with growing waits for as long as it fails (and counted): the source
stays unacknowledged, so a dead letter is never lost, and a restart delivers it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from pydantic_core import from_json

from monitor.adapter_types import INDEX_BITS, MAX_ENVELOPE, Letter, Message
from monitor.events import Rejection

log = logging.getLogger("driftwatch.worker")

HEADER_PREFIX = "driftwatch-"
EXCEPTION_HEADER = HEADER_PREFIX + "exception"
TRUNCATED_HEADER = HEADER_PREFIX + "truncated"
ORIGINAL_SIZE_HEADER = HEADER_PREFIX + "original-size"
#: Room left for the headers and the record's framing when a dead letter is cut to fit
#: ``kafka.max_message_bytes``.
HEADROOM = 16 << 10
#: Waits between attempts to write a dead letter that failed, growing up to the last.
RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)

#: Sends one dead letter ``(key, value, headers)``; what it returns (if not ``None``) is
#: awaited before the source message is acknowledged and must raise if the write failed.
DeadLetter = Callable[
    [bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[Awaitable[Any] | None]
]


class DeadLetterTooLargeError(Exception):
    """Raised by a :data:`DeadLetter` sender (or its confirmation) when Kafka refuses a dead
    letter for its size; the writer then sends it cut to half."""


#: The parts of a Kafka message a dead letter names.
Source = Message


class Counts(Protocol):
    """Where a writer counts (the adapter's stats)."""

    dead_letters: int
    dead_letters_truncated: int
    dead_letter_failures: int


@dataclass(slots=True)
class _Letter:
    key: bytes | None
    body: bytes
    headers: list[tuple[str, bytes]]
    size: int  # of the body as it came, before any cut
    delivery: Awaitable[Any] | None = None


class DeadLetterWriter:
    """Sends dead letters with ``send`` and confirms them.

    ``max_bytes`` (``kafka.max_message_bytes``): a body longer than it less
    :data:`HEADROOM` is cut before it is sent. ``counts`` (as it happens): ``dead_letters``
    written (confirmed), ``dead_letters_truncated`` (of those, cut) and
    ``dead_letter_failures`` (failed attempts, each retried).
    """

    def __init__(self, send: DeadLetter, max_bytes: int, counts: Counts) -> None:
        self.send = send
        self.max_bytes = max_bytes
        self.counts = counts
        self._pending: list[_Letter] = []

    @property
    def pending(self) -> int:
        """Dead letters sent and not confirmed yet."""
        return len(self._pending)

    async def write(
        self,
        msg: Source,
        body: bytes,
        rejection: Rejection,
        index: int | None = None,
        extra: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Send the dead letter of ``body`` (see the module docstring for its headers);
        :meth:`confirm` waits until it is written."""
        headers = [
            (HEADER_PREFIX + "reason", rejection.reason.value.encode()),
            (HEADER_PREFIX + "error", rejection.message[:1000].encode("utf-8", "replace")),
            (HEADER_PREFIX + "source-topic", msg.topic.encode()),
            (HEADER_PREFIX + "source-partition", str(msg.partition).encode()),
            (HEADER_PREFIX + "source-offset", str(msg.offset).encode()),
            *extra,
        ]
        if index is not None:
            headers.append((HEADER_PREFIX + "envelope-index", str(index).encode()))
        letter = _Letter(msg.key, body, headers, len(body))
        limit = max(0, self.max_bytes - HEADROOM)
        if len(body) > limit:
            _cut(letter, limit)
        await self._send(letter)
        self._pending.append(letter)

    async def confirm(self) -> None:
        """Wait until every dead letter sent is written; send again those that failed."""
        letters, self._pending = self._pending, []
        for letter in letters:
            attempt = 0
            while True:
                try:
                    if letter.delivery is not None:
                        await letter.delivery
                    break
                except DeadLetterTooLargeError:
                    if not letter.body:
                        raise
                    _cut(letter, len(letter.body) // 2)
                except Exception as exc:
                    await self._failed(letter, exc, attempt)
                    attempt += 1
                await self._send(letter)
            self.counts.dead_letters += 1
            if letter.size != len(letter.body):
                self.counts.dead_letters_truncated += 1

    async def _send(self, letter: _Letter) -> None:
        """Hand ``letter`` to the producer: cut to half while it is too large, retried with
        growing waits while sending fails."""
        attempt = 0
        while True:
            try:
                letter.delivery = await self.send(letter.key, letter.body, letter.headers)
                return
            except DeadLetterTooLargeError:
                if not letter.body:
                    raise
                _cut(letter, len(letter.body) // 2)
            except Exception as exc:
                await self._failed(letter, exc, attempt)
                attempt += 1

    async def _failed(self, letter: _Letter, exc: Exception, attempt: int) -> None:
        """A write of ``letter`` failed: count it, log the first of a series (and every 20th),
        wait."""
        self.counts.dead_letter_failures += 1
        if attempt % 20 == 0:
            log.warning(
                "cannot write a dead letter of %d bytes (attempt %d; retrying, the source "
                "message stays unacknowledged): %s: %s",
                len(letter.body),
                attempt + 1,
                type(exc).__name__,
                exc,
            )
        await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])


def _cut(letter: _Letter, size: int) -> None:
    """Cut ``letter``'s body to ``size`` bytes, with headers saying so and what it was."""
    letter.body = letter.body[:size]
    letter.headers = [
        h for h in letter.headers if h[0] not in (TRUNCATED_HEADER, ORIGINAL_SIZE_HEADER)
    ]
    letter.headers += [
        (TRUNCATED_HEADER, b"true"),
        (ORIGINAL_SIZE_HEADER, str(letter.size).encode()),
    ]


def refused_letters(
    refused: Sequence[Rejection], values: Mapping[int, tuple[Message, bytes, int]]
) -> list[Letter]:
    """Dead letters of the events :meth:`Pipeline.admit` refused; ``values``: by offset, the
    message, its value and its number of events (a rejection's offset is the position)."""
    letters: list[Letter] = []
    for rejection in refused:
        msg, raw, count = values[rejection.offset >> INDEX_BITS]
        index = rejection.offset & MAX_ENVELOPE
        body = raw if count == 1 else envelope_element(raw, index)
        letters.append((msg, body, rejection, index if count > 1 else None))
    return letters


def is_envelope(raw: bytes) -> bool:
    """Whether ``raw`` is a batch envelope as :func:`monitor.events.parse_message` tells."""
    return raw[:16].lstrip().startswith(b'{"events"')


def envelope_element(raw: bytes, index: int) -> bytes:
    """Re-encode one envelope element for its dead letter."""
    try:
        body = from_json(raw, allow_inf_nan=True)
        return orjson.dumps(body["events"][index], option=orjson.OPT_SERIALIZE_NUMPY)
    except (ValueError, KeyError, IndexError, TypeError, orjson.JSONEncodeError):
        return raw
