"""What the Faust agent does with each message, kept apart from Faust so it is unit-testable.

For every message: validate it (one event or a batch envelope), hand the events to the
:class:`~monitor.pipeline.Pipeline`, dead-letter whatever could not be used (with the reason
and the source topic, partition and offset in headers), store the checkpoints the pipeline
took in the state table, deliver alert state changes, and acknowledge the messages whose
effect is now in a checkpoint.

Delivery is at-least-once: a message is acknowledged (so its offset may be committed) only when
every stream it touched has checkpointed past it. After a crash Kafka re-delivers from the last
committed offset; the pipeline skips input at or before each stream's checkpointed position,
so the re-delivery rebuilds exactly the windows that were open. Positions are
``offset << 16 | index`` (index within an envelope), so an envelope may straddle a window.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import repeat
from typing import Any, Protocol

import orjson
from pydantic_core import from_json

from alerting.sinks import AlertSink
from alerting.types import Transition
from monitor.events import Event, Reason, Rejection, parse_message
from monitor.fastdecode import AnyEvent
from monitor.pipeline import Pipeline

INDEX_BITS = 16
MAX_ENVELOPE = (1 << INDEX_BITS) - 1
HEADER_PREFIX = "driftwatch-"
#: The worker's agent processes messages in batches of at most this many messages or bytes, or
#: what arrived within ``BATCH_SECONDS`` of the batch's first message: the per-message cost of
#: a pipeline call, a consumer span and a timing is paid once per batch, and an alert is
#: decided at most ``BATCH_SECONDS`` later than one message at a time would decide it. The byte
#: bound is small so that a batch's decoded events are still in the CPU cache when their window
#: is computed and when they are freed: the agent code over envelopes of 500 events went from a
#: median of 96 k to 141 k events/s (1.43x, interleaved rounds) when it went from 4 MiB to
#: 256 KiB (one envelope of 500 25-feature events per batch); 128 KiB was no faster.
BATCH_MESSAGES = 500
BATCH_BYTES = 256 << 10
BATCH_SECONDS = 0.05


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


#: A buffered message: the message, its value, its ack, and its context for ``enter``.
Item = tuple[Message, bytes | None, Callable[[], Any], Any]
DeadLetter = Callable[[bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[None]]


@dataclass(slots=True)
class AdapterStats:
    """Counts of the adapter itself (the pipeline counts events)."""

    messages: int = 0
    dead_letters: int = 0
    acked: int = 0
    checkpoints: int = 0
    started: float = field(default_factory=time.time)


class KafkaAdapter:
    """Message -> pipeline -> (dead letters, checkpoints, alert sinks, acks); no Faust types.

    Parameters
    ----------
    pipeline
        The pipeline, built with ``checkpointing=True`` and ``checkpoints=table.get``.
    table
        Where checkpoints go (a Faust table backed by a changelog topic in the worker).
    dead_letter
        Coroutine that produces one dead letter: ``(key, value, headers)``.
    sinks
        Receive alert state changes; ``offset`` in them is the Kafka offset.
    max_bytes
        Largest message accepted; bigger ones are dead-lettered as ``too_large``.
    observer
        Told about each message or batch (metrics, consumer and alert spans).
    enter
        Called with a buffered message's ``context`` (see :meth:`add`) before the work of the
        messages up to it is stored. The worker passes the Faust event and makes it Faust's
        current event, so that checkpoints go to the changelog partition of the input
        partition they belong to, as when a message is handled while it is being iterated.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        table: MutableMapping[str, Any],
        dead_letter: DeadLetter,
        sinks: Sequence[AlertSink] = (),
        max_bytes: int = 16 << 20,
        observer: BatchObserver | None = None,
        enter: Callable[[Any], None] | None = None,
    ) -> None:
        self.observer = observer
        self.pipeline = pipeline
        pipeline.position_shift = INDEX_BITS
        self.table = table
        self.dead_letter = dead_letter
        self.sinks = list(sinks)
        self.max_bytes = max_bytes
        self.stats = AdapterStats()
        self._unacked: dict[str, deque[tuple[int, Callable[[], Any]]]] = {}
        self.enter = enter
        self._buffer: list[Item] = []
        self._buffer_bytes = 0
        self._buffer_since = 0.0
        self._flushing = asyncio.Lock()

    @staticmethod
    def source(msg: Message) -> str:
        """The pipeline's name for a topic partition."""
        return f"{msg.topic}/{msg.partition}"

    async def handle(self, msg: Message, value: bytes | None, ack: Callable[[], Any]) -> None:
        """Process one message completely; never raises on bad input."""
        self.stats.messages += 1
        lines = self.pipeline.stats.lines
        source = self.source(msg)
        raw = value or b""
        fast = self.pipeline.decoder.message(raw) if len(raw) <= self.max_bytes else None
        base = msg.offset << INDEX_BITS
        if fast is not None and len(fast) <= MAX_ENVELOPE:
            events, positions = await self._admit(
                source,
                fast,
                range(base, base + len(fast)),
                kafka_time(msg),
                {msg.offset: (msg, raw, len(fast))},
            )
            self._observed(
                lambda o: o.begin(msg, events, len(raw)),
                source,
                events,
                positions,
                ((msg.offset, ack),),
                lines,
                True,
            )
            return
        await self._handle_validated(msg, raw, ack, source, lines)

    async def _handle_validated(
        self, msg: Message, raw: bytes, ack: Callable[[], Any], source: str, lines: int
    ) -> None:
        """A message the fast decoder refused: pydantic's verdict per event, dead letters."""
        base = msg.offset << INDEX_BITS
        parsed = parse_message(raw, self.max_bytes)
        if isinstance(parsed, Rejection):
            self.pipeline.reject(parsed)
            await self._dead_letter(msg, raw, parsed, None)
            parsed = []
        elif len(parsed) > MAX_ENVELOPE:
            rej = Rejection(
                Reason.TOO_LARGE, f"envelope of {len(parsed)} events exceeds {MAX_ENVELOPE}", 0
            )
            self.pipeline.reject(rej)
            await self._dead_letter(msg, raw, rej, None)
            parsed = []
        events: list[Event | Rejection] = []
        positions: list[int] = []
        for i, item in enumerate(parsed):
            if isinstance(item, Rejection):
                self.pipeline.reject(item)
                body = raw if len(parsed) == 1 else _element(raw, i)
                await self._dead_letter(msg, body, item, i if len(parsed) > 1 else None)
                continue
            events.append(item)
            positions.append(base | i)
        admitted, kept = await self._admit(
            source, events, positions, kafka_time(msg), {msg.offset: (msg, raw, len(parsed))}
        )
        self._observed(
            lambda o: o.begin(msg, admitted, len(raw)),
            source,
            admitted,
            kept,
            ((msg.offset, ack),),
            lines,
            False,
        )

    def _observed(
        self,
        begin: Callable[[BatchObserver], None],
        source: str,
        events: Sequence[AnyEvent | Rejection],
        positions: Sequence[int],
        acks: Iterable[tuple[int, Callable[[], Any]]],
        lines: int,
        predictions: bool,
    ) -> None:
        """Process parsed events, store the checkpoints, deliver the alerts and acknowledge
        what is safe among ``acks``; the observer hears ``begin`` and the end (``lines``: the
        pipeline's line count before these messages, so rejections counted for them are
        reported too). The events passed :meth:`_admit`."""
        observer = self.observer
        if observer is not None:
            begin(observer)
        error: BaseException | None = None
        try:
            self._deliver(
                self.pipeline.process_events(events, positions, source, predictions, admitted=True)
                if events
                else []
            )
        except BaseException as exc:
            error = exc
            raise
        finally:
            if observer is not None:
                observer.end(len(events), self.pipeline.stats.lines - lines - len(events), error)
        self._ack_safe(source, acks)

    async def _admit(
        self,
        source: str,
        events: Sequence[AnyEvent | Rejection],
        positions: Sequence[int],
        times: Sequence[float] | float,
        messages: Mapping[int, tuple[Message, bytes, int]],
    ) -> tuple[Sequence[AnyEvent | Rejection], Sequence[int]]:
        """What :meth:`Pipeline.admit` takes of ``events``; what it refuses (clock skew,
        stream limits) is dead-lettered first. ``messages``: by offset, the message, its value
        and its number of events."""
        kept, kept_positions, refused = self.pipeline.admit(events, positions, source, times)
        for rejection in refused:
            msg, raw, count = messages[rejection.offset >> INDEX_BITS]
            index = rejection.offset & MAX_ENVELOPE
            body = raw if count == 1 else _element(raw, index)
            await self._dead_letter(msg, body, rejection, index if count > 1 else None)
        return kept, kept_positions

    def _deliver(self, transitions: list[Transition]) -> None:
        """Store the checkpoints the pipeline took; send the state changes to the sinks."""
        for group, state in self.pipeline.take_checkpoints().items():
            self.table[group] = state
            self.stats.checkpoints += 1
        if transitions:
            shifted = [replace(t, offset=t.offset >> INDEX_BITS) for t in transitions]
            if self.observer is not None:
                shifted = self.observer.alerts(shifted)
            for sink in self.sinks:
                sink.send(shifted)

    def _ack_safe(self, source: str, acks: Iterable[tuple[int, Callable[[], Any]]]) -> None:
        queue = self._unacked.setdefault(source, deque())
        queue.extend(acks)
        safe = self.pipeline.safe_position(source)
        while queue and (safe is None or (queue[0][0] + 1) << INDEX_BITS <= safe):
            queue.popleft()[1]()
            self.stats.acked += 1

    # -- batches of messages (the worker's agent) ------------------------------------------------

    def add(
        self, msg: Message, value: bytes | None, ack: Callable[[], Any], context: Any = None
    ) -> bool:
        """Buffer one message for :meth:`flush` (nothing is decoded yet; ``context`` is given
        to ``enter`` before its work is stored); ``True`` when the
        batch is complete and should be flushed now: :data:`BATCH_MESSAGES` messages,
        :data:`BATCH_BYTES` bytes, or its first message waited :data:`BATCH_SECONDS`."""
        buffer = self._buffer
        now = time.monotonic()
        if not buffer:
            self._buffer_since = now
        buffer.append((msg, value, ack, context))
        if value is not None:
            self._buffer_bytes += len(value)
        return (
            len(buffer) >= BATCH_MESSAGES
            or self._buffer_bytes >= BATCH_BYTES
            or now - self._buffer_since >= BATCH_SECONDS
        )

    def stale(self) -> bool:
        """Whether buffered messages waited :data:`BATCH_SECONDS` (the worker's timer flushes
        them when no further message completes the batch)."""
        return bool(self._buffer) and time.monotonic() - self._buffer_since >= BATCH_SECONDS

    @property
    def buffered(self) -> int:
        """Messages waiting for :meth:`flush`."""
        return len(self._buffer)

    async def flush(self) -> None:
        """Process the buffered messages (:meth:`handle_many`)."""
        async with self._flushing:  # the agent and the timer: one batch at a time, in order
            if self._buffer:
                items, self._buffer, self._buffer_bytes = self._buffer, [], 0
                await self.handle_many(items)

    async def handle_many(self, items: Sequence[Item]) -> None:
        """Process messages as :meth:`handle` does, with the per-message work batched.

        Messages are taken partition by partition, in order. Runs of messages that
        :mod:`monitor.fastdecode` takes go to the pipeline in one call, with one consumer span
        and one timing for the run; any other message is validated on its own as in
        :meth:`handle` (the reason, dead letters), in its place in the order.
        """
        by_partition: dict[tuple[str, int], list[Item]] = {}
        for item in items:
            msg = item[0]
            by_partition.setdefault((msg.topic, msg.partition), []).append(item)
        enter = self.enter
        decode = self.pipeline.decoder.messages
        for group in by_partition.values():
            source = self.source(group[0][0])
            run: list[tuple[Message, Callable[[], Any]]] = []
            events: list[AnyEvent] = []
            positions: list[int] = []
            times: list[float] = []
            values: dict[int, tuple[Message, bytes, int]] = {}
            size = 0
            context = None
            raws = [value or b"" for _, value, _, _ in group]
            decoded = decode(raws, self.max_bytes)
            for (msg, _, ack, ctx), raw, fast in zip(group, raws, decoded, strict=True):
                if fast is None or len(fast) > MAX_ENVELOPE:
                    if run:
                        if enter is not None and context is not None:
                            enter(context)
                        await self._run(source, run, events, positions, times, values, size)
                        run, events, positions, times, values, size = [], [], [], [], {}, 0
                    if enter is not None and ctx is not None:
                        enter(ctx)
                    self.stats.messages += 1
                    lines = self.pipeline.stats.lines
                    await self._handle_validated(msg, raw, ack, source, lines)
                    continue
                context = ctx
                run.append((msg, ack))
                size += len(raw)
                base = msg.offset << INDEX_BITS
                values[msg.offset] = (msg, raw, len(fast))
                if len(fast) == 1:
                    events.append(fast[0])
                    positions.append(base)
                    times.append(kafka_time(msg))
                else:
                    events.extend(fast)
                    positions.extend(range(base, base + len(fast)))
                    times.extend(repeat(kafka_time(msg), len(fast)))
            if run:
                if enter is not None and context is not None:
                    enter(context)
                await self._run(source, run, events, positions, times, values, size)

    async def _run(
        self,
        source: str,
        run: list[tuple[Message, Callable[[], Any]]],
        events: list[AnyEvent],
        positions: list[int],
        times: list[float],
        values: Mapping[int, tuple[Message, bytes, int]],
        size: int,
    ) -> None:
        """Valid predictions of consecutive messages of one partition, in one pipeline call."""
        self.stats.messages += len(run)
        msgs = [m for m, _ in run]
        lines = self.pipeline.stats.lines
        admitted, kept = await self._admit(source, events, positions, times, values)
        self._observed(
            lambda o: o.begin_batch(msgs, admitted, kept, size),  # type: ignore[arg-type]
            source,
            admitted,
            kept,
            [(m.offset, ack) for m, ack in run],
            lines,
            True,
        )

    def unacked(self) -> int:
        """Messages processed but not yet acknowledged (their windows are still open)."""
        return sum(len(q) for q in self._unacked.values())

    async def _dead_letter(
        self, msg: Message, body: bytes, rejection: Rejection, index: int | None
    ) -> None:
        headers = [
            (HEADER_PREFIX + "reason", rejection.reason.value.encode()),
            (HEADER_PREFIX + "error", rejection.message[:1000].encode("utf-8", "replace")),
            (HEADER_PREFIX + "source-topic", msg.topic.encode()),
            (HEADER_PREFIX + "source-partition", str(msg.partition).encode()),
            (HEADER_PREFIX + "source-offset", str(msg.offset).encode()),
        ]
        if index is not None:
            headers.append((HEADER_PREFIX + "envelope-index", str(index).encode()))
        await self.dead_letter(msg.key, body, headers)
        self.stats.dead_letters += 1

    def status(self) -> dict[str, Any]:
        """Counters for the stats file and the status page."""
        s = self.pipeline.stats
        return {
            "messages": self.stats.messages,
            "accepted": s.accepted,
            "rejected": dict(s.rejected),
            "dead_letters": self.stats.dead_letters,
            "duplicates_skipped": s.duplicates,
            "streams_restored": s.restored,
            "streams_stale": s.stale,
            "windows": s.windows,
            "checkpoints": self.stats.checkpoints,
            "acked": self.stats.acked,
            "unacked": self.unacked(),
            "events_by_stream": {st.group: st.events for st in self.pipeline.streams.values()},
            "labels_by_stream": {st.group: st.labels for st in self.pipeline.streams.values()},
            "alerts": {f"{n}/{st}": c for (n, st), c in s.alerts.items()},
        }


def kafka_time(msg: Message) -> float:
    """The message's Kafka timestamp in epoch seconds (Faust gives seconds), NaN without one
    (a message of the old format has -1; test doubles have none)."""
    ts = getattr(msg, "timestamp", None)
    if isinstance(ts, int | float) and not isinstance(ts, bool) and ts > 0:
        return float(ts)
    return math.nan


def _element(raw: bytes, index: int) -> bytes:
    """Re-encode one envelope element for its dead letter."""
    try:
        body = from_json(raw, allow_inf_nan=True)
        return orjson.dumps(body["events"][index], option=orjson.OPT_SERIALIZE_NUMPY)
    except (ValueError, KeyError, IndexError, TypeError, orjson.JSONEncodeError):
        return raw
