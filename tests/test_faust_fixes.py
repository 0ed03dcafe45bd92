"""Faust's own fetch loop (``Consumer._drain_messages``) and acknowledgements, with and without
:mod:`monitor.faust_fixes`: a seek in the middle of a batch, as a rebalance makes, must not
make the loop drop the messages the seek re-reads, nor record offset gaps that are not in the
log; a message a stream skipped must not be acknowledged.

The loop is Faust's, unchanged; only the batches (what aiokafka would return) and the callback
(what the streams would do) are given here."""

from __future__ import annotations

import asyncio
import types
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from monitor import faust_fixes

TOPIC = "in"
PART = TP(TOPIC, 0)


@dataclass(eq=False)
class Record:
    """What Faust's loop reads of a message."""

    topic: str
    partition: int
    offset: int
    key: bytes = b""
    value: bytes = b""
    tracked: bool = False
    acked: bool = False
    refcount: int = 0

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


def drain(
    batches: list[list[int]],
    on_message: Callable[[Any, int, list[int]], None],
    fixed: bool = True,
) -> tuple[list[int], Any]:
    """Run Faust's fetch loop over ``batches`` of offsets of one partition; ``on_message``
    (consumer, offset, delivered so far) runs as each message is handed on. Returns the
    offsets handed on, in order, and the consumer."""

    async def run() -> tuple[list[int], Any]:
        faust_fixes.install()
        app: Any = faust.App(f"t-{id(batches)}", broker="kafka://127.0.0.1:1", web_enabled=False)
        app.topics._acking_topics.add(TOPIC)  # acks enabled, as for the worker's input
        consumer: Any = app.consumer
        if not fixed:
            consumer._read_offset = defaultdict(lambda: None)  # Faust's own
        fetcher = types.SimpleNamespace(_stopped=asyncio.Event())
        pending = list(batches)

        async def next_records(self: Any, timeout: float) -> Any:
            return (pending.pop(0) if pending else None), None

        consumer._wait_next_records = types.MethodType(
            faust_fixes._batch_requested(next_records), consumer
        )

        async def getmany(timeout: float) -> AsyncIterator[tuple[TP, Record]]:
            records, _ = await consumer._wait_next_records(timeout)
            if records is None:
                fetcher._stopped.set()
                return
            for offset in records:
                yield PART, Record(TOPIC, 0, offset)

        delivered: list[int] = []

        async def callback(message: Record) -> None:
            delivered.append(message.offset)
            on_message(consumer, message.offset, delivered)

        consumer.getmany = getmany
        consumer.callback = callback
        try:
            await consumer._drain_messages(fetcher)
        finally:
            consumer._thread.thread_loop.close()  # made by Faust, never started here
        return delivered, consumer

    return asyncio.run(run())


def seek_back_at(offset: int, to: int) -> Callable[[Any, int, list[int]], None]:
    """A seek back to ``to`` (what ``Consumer.perform_seek`` writes) while ``offset`` of the
    first batch is being handed on."""

    def on_message(consumer: Any, got: int, delivered: list[int]) -> None:
        if got == offset and delivered.count(offset) == 1:
            consumer._read_offset.update({PART: to})

    return on_message


def test_faust_alone_drops_what_a_seek_in_a_batch_re_reads() -> None:
    """The defect, in Faust's loop as it is: the stale batch's messages after the seek move the
    read offset forward again and the re-read messages below it are dropped."""
    delivered, _ = drain([list(range(10, 16)), list(range(10, 21))], seek_back_at(12, 10), False)
    assert delivered[6:] == [15, 16, 17, 18, 19, 20]  # 10 to 14 never handed on again


def test_a_seek_in_a_batch_drops_nothing_it_re_reads() -> None:
    delivered, consumer = drain([list(range(10, 16)), list(range(10, 21))], seek_back_at(12, 10))
    assert delivered[:6] == list(range(10, 16))  # the stale batch is still handed on
    assert delivered[6:] == list(range(10, 21))  # and everything the seek re-reads
    assert consumer._read_offset.stale_writes == 4  # 12 (after the seek), 13, 14, 15
    assert consumer._read_offset[PART] == 20


def test_a_stale_batch_records_no_gap() -> None:
    """After the seek, a jump within the stale batch is measured against the seek's position:
    Faust would record 11 to 29 as a gap, that is as acknowledged, and commit past them."""
    _, unfixed = drain([[10, 11, 12, 30], [10, 11, 12]], seek_back_at(12, 10), False)
    assert unfixed._gap[PART]  # the defect
    delivered, consumer = drain([[10, 11, 12, 30], [10, 11, 12]], seek_back_at(12, 10))
    assert delivered == [10, 11, 12, 30, 10, 11, 12]
    assert not consumer._gap[PART]


def test_a_gap_in_the_log_is_still_recorded() -> None:
    """Offsets missing from a fresh batch (compaction, transaction markers) are still Faust's
    gaps, so commits pass them."""
    delivered, consumer = drain([[10, 11, 15, 16]], lambda *_: None)
    assert delivered == [10, 11, 15, 16]
    # Faust's interval ends after the message that follows the gap (which is acked anyway).
    assert sorted((i.begin, i.end) for i in consumer._gap[PART]) == [(12, 16)]


def test_reads_of_unknown_partitions_store_nothing() -> None:
    offsets = faust_fixes.ReadOffsets()
    assert offsets[PART] is None
    assert PART not in offsets
    assert offsets.seeks == 0
    offsets[PART] = 5  # outside the fetch loop: a seek
    del offsets[PART]
    offsets.update({PART: 7})
    assert offsets.pop(PART) == 7
    assert offsets.seeks == 4


def test_a_message_no_stream_tracked_is_not_acknowledged() -> None:
    """A stream skips (and acknowledges) a message of an older consumer generation; here only
    messages the Kafka adapter processed count as acknowledged."""

    async def run() -> tuple[bool, bool, list[int]]:
        faust_fixes.install()
        app: Any = faust.App("t-ack", broker="kafka://127.0.0.1:1", web_enabled=False)
        app.topics._acking_topics.add(TOPIC)
        consumer: Any = app.consumer
        skipped = Record(TOPIC, 0, 4)
        processed = Record(TOPIC, 0, 5, tracked=True)
        consumer._thread.thread_loop.close()  # made by Faust, never started here
        return consumer.ack(skipped), consumer.ack(processed), list(consumer._acked[PART])

    skipped, processed, acked = asyncio.run(run())
    assert (skipped, processed, acked) == (False, True, [5])


def test_a_second_resume_keeps_what_the_first_let_in() -> None:
    """Faust resumes flow control more than once after a rebalance; mode's resume clears the
    streams' queues each time, and the second took the first message fetched after the seek."""

    async def run(resume: Callable[[FlowControlEvent], None]) -> list[str]:
        faust_fixes.install()
        flow = FlowControlEvent(initially_suspended=True)
        queue: ThrowableQueue[str] = ThrowableQueue(flow_control=flow, clear_on_resume=True)
        queue.put_nowait("fetched before the rebalance")  # stale: the seek reads it again
        resume(flow)
        await queue.put("first after the seek")
        resume(flow)
        return [queue.get_nowait() for _ in range(queue.qsize())]

    assert asyncio.run(run(FlowControlEvent.resume.__wrapped__)) == []  # type: ignore[attr-defined]
    assert asyncio.run(run(FlowControlEvent.resume)) == ["first after the seek"]
