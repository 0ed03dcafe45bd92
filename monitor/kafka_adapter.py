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
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import replace
from itertools import repeat
from operator import attrgetter
from typing import Any

from alerting.sinks import AlertSink
from alerting.types import Transition
from monitor.adapter_types import (
    INDEX_BITS,
    MAX_ENVELOPE,
    AdapterStats,
    BatchObserver,
    Letter,
    Message,
    kafka_time,
)
from monitor.dead_letters import (
    EXCEPTION_HEADER,
    DeadLetter,
    DeadLetterWriter,
    envelope_element,
    is_envelope,
    refused_letters,
)
from monitor.events import Event, Reason, Rejection, parse_message
from monitor.fastdecode import AnyEvent, FastPrediction
from monitor.guard import ErrorLog, internal_rejection, restore, snapshot
from monitor.partitions import PartitionLifecycle
from monitor.pipeline import Pipeline

log = logging.getLogger("driftwatch.worker")
_OFFSET = attrgetter("offset")

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


#: A buffered message: the message, its value, its ack, and its context for ``enter``.
Item = tuple[Message, bytes | None, Callable[[], Any], Any]
#: A message of a batch run: the message, its ack, its value and its decoded events.
_RunItem = tuple[Message, Callable[[], Any], bytes, list[FastPrediction]]
#: A dead letter to write: the source message, the body, why, and the index in an envelope.


class KafkaAdapter(PartitionLifecycle):
    """Message -> pipeline -> (dead letters, checkpoints, alert sinks, acks); no Faust types.

    Parameters
    ----------
    pipeline
        The pipeline, built with ``checkpointing=True`` and ``checkpoints=table.get``.
    table
        Where checkpoints go (a Faust table backed by a changelog topic in the worker).
    dead_letter
        Coroutine that sends one dead letter: ``(key, value, headers)`` (see
        :mod:`monitor.dead_letters`). A message is acknowledged only after its dead letters
        are written; a failed write is retried and counted (``dead_letter_failures``), and a
        dead letter too large for Kafka is cut shorter (``dead_letters_truncated``).
    sinks
        Receive alert state changes; ``offset`` in them is the Kafka offset.
    max_bytes
        Largest message accepted (``kafka.max_message_bytes``); bigger ones are dead-lettered
        as ``too_large``. A message that is one event, not an envelope, may not exceed the
        pipeline's ``events.max_bytes``. Dead letters are cut to fit ``max_bytes``.
    observer
        Told about each message or batch (metrics, consumer and alert spans).
    enter
        Called with a buffered message's ``context`` (see :meth:`add`) before the work of the
        messages up to it is stored. The worker passes the Faust event and makes it Faust's
        current event, so that checkpoints go to the changelog partition of the input
        partition they belong to, as when a message is handled while it is being iterated.

    An exception that escapes the decoders or the pipeline (a bug) rejects the message that
    raises it as ``internal_error``: it is dead-lettered with the exception's class in the
    header ``driftwatch-exception``, logged once (:class:`~monitor.guard.ErrorLog`), and the
    worker goes on. A batch that raises is retried message by message to find that message.
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
        self.event_max_bytes = pipeline.settings.events.max_bytes
        self.max_unacked = pipeline.settings.kafka.max_unacked_messages
        self.stats = AdapterStats()
        self.errors = ErrorLog(log)
        self.letters = DeadLetterWriter(dead_letter, max_bytes, self.stats)
        self._unacked: dict[str, deque[tuple[int, Callable[[], Any]]]] = {}
        self._touched: set[str] = set()
        #: The Faust event of the last message of each source (see :meth:`drain`).
        self._contexts: dict[str, Any] = {}
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
        source = self.source(msg)
        raw = value or b""
        try:
            fast = self.pipeline.decoder.message(raw) if self._decodable(raw) else None
        except Exception as exc:
            await self._internal_error(msg, raw, ack, source, exc)
        else:
            if fast is not None and len(fast) <= MAX_ENVELOPE:
                await self._run(source, [(msg, ack, raw, fast)], single=True)
            else:
                await self._validated(msg, raw, ack, source)
        await self._settle()

    def _decodable(self, raw: bytes) -> bool:
        """Whether the fast decoder may see ``raw``: within ``max_bytes``, and within the
        per-event limit unless it is an envelope (whose events the decoders measure)."""
        n = len(raw)
        return n <= self.max_bytes and (n <= self.event_max_bytes or is_envelope(raw))

    async def _validated(
        self, msg: Message, raw: bytes, ack: Callable[[], Any], source: str
    ) -> None:
        """:meth:`_handle_validated`, with an exception making the message ``internal_error``."""
        counts = snapshot(self.pipeline.stats)
        error: Exception | None = None
        letters = []
        try:
            letters = self._handle_validated(msg, raw, ack, source)
        except Exception as exc:
            restore(self.pipeline.stats, counts)
            error = exc
        if error is not None:
            await self._internal_error(msg, raw, ack, source, error)
            return
        for body, rejection, index in letters:
            await self.letters.write(msg, body, rejection, index)

    def _handle_validated(
        self, msg: Message, raw: bytes, ack: Callable[[], Any], source: str
    ) -> list[tuple[bytes, Rejection, int | None]]:
        """A message the fast decoder refused: pydantic's verdict per event. Returns the dead
        letters to write, sent by the caller once nothing can raise any more (a message gets
        its dead letters, or one ``internal_error`` letter, never both)."""
        lines = self.pipeline.stats.lines
        base = msg.offset << INDEX_BITS
        letters: list[tuple[bytes, Rejection, int | None]] = []
        parsed: list[Event | Rejection] | Rejection
        if len(raw) > self.event_max_bytes and not is_envelope(raw):
            parsed = Rejection(
                Reason.TOO_LARGE,
                f"event of {len(raw)} bytes exceeds the {self.event_max_bytes}-byte limit",
                0,
            )
        else:
            parsed = parse_message(raw, self.max_bytes, self.event_max_bytes)
        if isinstance(parsed, Rejection):
            self.pipeline.reject(parsed)
            letters.append((raw, parsed, None))
            parsed = []
        elif len(parsed) > MAX_ENVELOPE:
            rej = Rejection(
                Reason.TOO_LARGE, f"envelope of {len(parsed)} events exceeds {MAX_ENVELOPE}", 0
            )
            self.pipeline.reject(rej)
            letters.append((raw, rej, None))
            parsed = []
        events: list[Event | Rejection] = []
        positions: list[int] = []
        for i, item in enumerate(parsed):
            if isinstance(item, Rejection):
                self.pipeline.reject(item)
                body = raw if len(parsed) == 1 else envelope_element(raw, i)
                letters.append((body, item, i if len(parsed) > 1 else None))
                continue
            events.append(item)
            positions.append(base | i)
        kept, kept_positions, refused = self.pipeline.admit(
            events, positions, source, kafka_time(msg)
        )
        values = {msg.offset: (msg, raw, len(parsed))}
        letters += [letter[1:] for letter in refused_letters(refused, values)]
        self._observed(
            lambda o: o.begin(msg, kept, len(raw)),
            source,
            kept,
            kept_positions,
            ((msg.offset, ack),),
            lines,
            False,
        )
        return letters

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
        """Process parsed events, store the checkpoints, deliver the alerts and queue ``acks``
        (released by :meth:`_settle`); the observer hears ``begin`` and the end (``lines``: the
        pipeline's line count before these messages, so rejections counted for them are
        reported too). The events passed :meth:`Pipeline.admit`. If the pipeline raises, the
        state changes it decided before are delivered all the same (the alert tracker has made
        them), then the error is raised."""
        observer = self.observer
        if observer is not None:
            begin(observer)
        error: BaseException | None = None
        out: list[Transition] = []
        try:
            try:
                if events:
                    self.pipeline.process_events(
                        events, positions, source, predictions, out, admitted=True
                    )
            except BaseException:
                out.sort(key=_OFFSET)
                self._deliver(out)
                raise
            self._deliver(out)  # within the consumer span: alert spans are its children
        except BaseException as exc:
            error = exc
            raise
        finally:
            if observer is not None:
                observer.end(len(events), self.pipeline.stats.lines - lines - len(events), error)
        self._unacked.setdefault(source, deque()).extend(acks)
        self._touched.add(source)

    def _deliver(self, transitions: list[Transition]) -> None:
        """Store the checkpoints the pipeline took; send the state changes to the sinks."""
        for group, state in self.pipeline.take_checkpoints().items():
            if state is None:
                self.table.pop(group, None)
                continue
            self.table[group] = state
            self.stats.checkpoints += 1
        if transitions:
            shifted = [replace(t, offset=t.offset >> INDEX_BITS) for t in transitions]
            if self.observer is not None:
                shifted = self.observer.alerts(shifted)
            for sink in self.sinks:
                sink.send(shifted)

    async def _settle(self) -> None:
        """Wait until the dead letters sent are written, then acknowledge what is safe."""
        if self.letters.pending:
            await self.letters.confirm()
        for source in self._touched:
            queue = self._unacked[source]
            safe = self.pipeline.safe_position(source)
            while queue and (safe is None or (queue[0][0] + 1) << INDEX_BITS <= safe):
                queue.popleft()[1]()
                self.stats.acked += 1
        self._touched.clear()

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
        :meth:`handle` (the reason, dead letters), in its place in the order. Messages are
        acknowledged at the end, once their dead letters are written.
        """
        by_partition: dict[tuple[str, int], list[Item]] = {}
        for item in items:
            msg = item[0]
            by_partition.setdefault((msg.topic, msg.partition), []).append(item)
        for group in by_partition.values():
            await self._partition(group)
        await self._settle()

    async def _partition(self, group: list[Item]) -> None:
        """The messages of one partition (see :meth:`handle_many`)."""
        enter = self.enter
        source = self.source(group[0][0])
        run: list[_RunItem] = []
        context = None
        raws = [value or b"" for _, value, _, _ in group]
        decoded = self._decode(raws)
        for (msg, _, ack, ctx), raw, fast in zip(group, raws, decoded, strict=True):
            if fast is None or isinstance(fast, Exception) or len(fast) > MAX_ENVELOPE:
                if run:
                    if enter is not None and context is not None:
                        enter(context)
                    await self._run(source, run)
                    run = []
                if enter is not None and ctx is not None:
                    enter(ctx)
                self.stats.messages += 1
                if isinstance(fast, Exception):
                    await self._internal_error(msg, raw, ack, source, fast)
                else:
                    await self._validated(msg, raw, ack, source)
                continue
            context = ctx
            run.append((msg, ack, raw, fast))
        if run:
            if enter is not None and context is not None:
                enter(context)
            await self._run(source, run)
        if group[-1][3] is not None:
            self._contexts[source] = group[-1][3]
        self._bound_unacked(source)

    def _bound_unacked(self, source: str) -> None:
        """Keep the unacknowledged messages of ``source`` within ``kafka.max_unacked_messages``:
        past it, the streams holding back the older half checkpoint their collected events
        (:meth:`Pipeline.checkpoint_collected`), so those messages can be acknowledged. Runs
        in the context of the partition's last message, so the checkpoints go to its
        changelog partition."""
        queue = self._unacked.get(source)
        limit = self.max_unacked
        if queue is None or len(queue) <= limit:
            return
        before = (queue[len(queue) - limit // 2][0]) << INDEX_BITS
        if self.pipeline.checkpoint_collected(source, before):
            self.stats.collected_checkpoints += 1
            self._deliver([])

    def _decode(self, raws: list[bytes]) -> list[list[FastPrediction] | Exception | None]:
        """The fast decoder's verdict on each message: its events, ``None`` (pydantic must
        decide) or the exception it raised on that message."""
        decodable = raws
        if max(map(len, raws)) > min(self.event_max_bytes, self.max_bytes):  # rare
            decodable = [raw if self._decodable(raw) else b"" for raw in raws]
        try:
            return list(self.pipeline.decoder.messages(decodable, self.max_bytes))
        except Exception:
            pass
        out: list[list[FastPrediction] | Exception | None] = []
        for raw in decodable:  # find the message that raises
            try:
                out.append(self.pipeline.decoder.message(raw) if raw else None)
            except Exception as exc:
                out.append(exc)
        return out

    async def _run(self, source: str, run: list[_RunItem], single: bool = False) -> None:
        """Valid predictions of consecutive messages of one partition, in one pipeline call;
        if it raises, message by message (:meth:`_isolate`)."""
        self.stats.messages += 0 if single else len(run)
        stats = self.pipeline.stats
        counts = snapshot(stats)
        error: Exception | None = None
        letters: list[Letter] = []
        try:
            letters = self._apply(source, run, counts[0], single)
        except Exception as exc:
            restore(stats, counts)
            error = exc
        if error is not None:  # outside the handler: a message's traceback is its own
            await self._isolate(source, run, error)
        for msg, body, rejection, index in letters:
            await self.letters.write(msg, body, rejection, index)

    def _apply(self, source: str, run: list[_RunItem], lines: int, single: bool) -> list[Letter]:
        """Admit the events of ``run`` (:meth:`Pipeline.admit`: clock skew, stream limits) and
        process them; returns the dead letters of the events admission refused, written by the
        caller once nothing can raise any more."""
        events: list[AnyEvent] = []
        positions: list[int] = []
        times: list[float] = []
        values: dict[int, tuple[Message, bytes, int]] = {}
        size = 0
        for msg, _, raw, fast in run:
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
        kept, kept_positions, refused = self.pipeline.admit(events, positions, source, times)
        msgs = [item[0] for item in run]
        self._observed(
            (lambda o: o.begin(msgs[0], kept, size))
            if single
            else (lambda o: o.begin_batch(msgs, kept, kept_positions, size)),  # type: ignore[arg-type]
            source,
            kept,
            kept_positions,
            [(m.offset, ack) for m, ack, _, _ in run],
            lines,
            True,
        )
        return refused_letters(refused, values)

    async def _isolate(self, source: str, run: list[_RunItem], error: Exception) -> None:
        """Retry the messages of a run that raised ``error`` one by one: the one that raises
        again is rejected as ``internal_error``. Events the failed call applied are skipped on
        the retry as re-deliveries (positions, see :class:`Pipeline`), so nothing is applied
        twice; the counters were rolled back, so nothing is counted twice."""
        stats = self.pipeline.stats
        found = False
        for item in run:
            counts = snapshot(stats)
            letters: list[Letter] = []
            try:
                letters = self._apply(source, [item], counts[0], True)
            except Exception as exc:
                restore(stats, counts)
                found = True
                msg, ack, raw, _ = item
                await self._internal_error(msg, raw, ack, source, exc)
            for msg, body, rejection, index in letters:
                await self.letters.write(msg, body, rejection, index)
        if not found:  # the batch raised, its messages alone did not: say so, once
            self.errors.report(error, f"a batch of {len(run)} messages of {source} (retried)")

    async def _internal_error(
        self, msg: Message, raw: bytes, ack: Callable[[], Any], source: str, exc: Exception
    ) -> None:
        """Reject a message whose handling raised ``exc``: count, log, dead-letter, ack."""
        self.stats.internal_errors += 1
        rejection = internal_rejection(exc, 0)
        self.pipeline.reject(rejection)
        self.errors.report(exc, f"{self.source(msg)}@{msg.offset}")
        await self.letters.write(
            msg, raw, rejection, None, [(EXCEPTION_HEADER, type(exc).__name__.encode())]
        )
        self._unacked.setdefault(source, deque()).append((msg.offset, ack))
        self._touched.add(source)

    def unacked(self) -> int:
        """Messages processed but not yet acknowledged (their windows are still open)."""
        return sum(len(q) for q in self._unacked.values())

    def status(self) -> dict[str, Any]:
        """Counters for the stats file and the status page."""
        s = self.pipeline.stats
        return {
            "messages": self.stats.messages,
            "accepted": s.accepted,
            "rejected": dict(s.rejected),
            "dead_letters": self.stats.dead_letters,
            "dead_letters_truncated": self.stats.dead_letters_truncated,
            "dead_letter_failures": self.stats.dead_letter_failures,
            "internal_errors": self.stats.internal_errors,
            "duplicates_skipped": s.duplicates,
            "streams_restored": s.restored,
            "streams_stale": s.stale,
            "windows": s.windows,
            "checkpoints": self.stats.checkpoints,
            "collected_checkpoints": self.stats.collected_checkpoints,
            "acked": self.stats.acked,
            "unacked": self.unacked(),
            "events_by_stream": {st.group: st.events for st in self.pipeline.streams.values()},
            "labels_by_stream": {st.group: st.labels for st in self.pipeline.streams.values()},
            "alerts": {f"{n}/{st}": c for (n, st), c in s.alerts.items()},
        }
