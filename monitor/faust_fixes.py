"""Corrections to Faust's consumer (faust-streaming 0.15), installed once per worker process.

**Messages dropped after a seek.** Faust's fetch loop (``Consumer._drain_messages``) remembers,
per partition, the offset of the last message it handed on (``_read_offset``) and silently
drops any later message below it (``DROPPED MESSAGE ROFF`` at its "dev" log level). A seek
(every rebalance seeks the stream partitions back to their committed offsets) sets that
position back. But a batch fetched before the seek may still be being handed on when the seek
happens, and each of its messages sets the position forward again: the messages the seek meant
to re-read are then dropped, without a trace, until the fetch passes the stale batch's last
offset. Seen on a worker restarted while the killed one was still in the group (two
generations in quick succession): 29 messages after the committed offset dropped, among them a
canary version's events; with a single dropped message at the committed offset, Faust's commit
(``Consumer._new_offset`` tolerates a one-offset gap at the head) then moves past it for good.
:class:`ReadOffsets` counts seeks; the fetch loop's own writes count only for a batch requested
since the last seek, and such a stale batch adds no offset gaps either (Faust treats a gap as
acknowledged). Its messages are still handed on: those the seek re-reads are recognised by the
pipeline as delivered again.

**Skipped messages acknowledged.** A stream skips a message fetched under an older consumer
generation, or while flow control is suspended, and acknowledges it (so lag does not grow).
An acknowledgement out of order lets Faust commit past messages not processed yet; here every
message is acknowledged by the Kafka adapter once checkpointed, so an acknowledgement of a
message no stream tracked is refused. The message is read again after the rebalance's seek.

**Input cleared by a second resume.** Resuming flow control (``FlowControlEvent.resume``, in
mode) clears every stream's queue, to drop what was fetched before the seek. Faust resumes it
more than once after a rebalance; a resume while flow is already on cleared the first message
fetched after the seek, which no later seek reads again: with the committed offset right
before it, Faust's commit then passed it (one canary event lost after a restart). Here a
resume that finds flow already on changes nothing.

**Input before recovery.** Faust may hand on input of newly assigned partitions before their
table recovery and seek are over; the worker's agent (:mod:`monitor.app`) keeps such input
buffered until the rebalance is over, so no model version is started before its checkpoint is
in the table.

**Fetch wait.** Faust builds the worker's aiokafka consumer with ``fetch_max_wait_ms=1500`` and
no setting for it; an app carrying :data:`FETCH_WAIT_ATTR` gets its own value
(``kafka.fetch_max_wait_ms``).

Related upstream reports: faust-streaming/faust#216, #221 (events skipped around a rebalance),
#606 (commit past a gap).
"""

from __future__ import annotations

from collections import defaultdict
from contextvars import ContextVar
from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from mode.utils.queues import FlowControlEvent

from monitor.patching import wrap, wrapped

#: Attribute of a Faust app holding the ``fetch_max_wait_ms`` its worker consumer should use.
FETCH_WAIT_ATTR = "driftwatch_fetch_max_wait_ms"
_MARK = "_driftwatch"

# True within Faust's fetch loop (``Consumer._drain_messages``): its writes of read offsets
# are the ones to check; every other write is a seek.
_DRAINING: ContextVar[bool] = ContextVar("driftwatch_draining", default=False)


def _none() -> None:
    return None


class ReadOffsets(defaultdict[Any, int | None]):
    """Faust's per-partition read offsets, in which the fetch loop's writes for a batch
    requested before the latest seek are ignored (see the module docstring).

    ``seeks`` counts seeks (any write outside the fetch loop); ``batch_seeks`` is its value
    when the batch being handed on was requested; ``stale_writes`` counts ignored writes.
    """

    def __init__(self) -> None:
        super().__init__(_none)
        self.seeks = 0
        self.batch_seeks = 0
        self.stale_writes = 0

    def fresh(self) -> bool:
        """Whether the batch being handed on was requested after the latest seek."""
        return self.batch_seeks == self.seeks

    def __missing__(self, key: Any) -> None:
        return None  # a read, not a write: nothing is stored

    def __setitem__(self, key: Any, value: int | None) -> None:
        if _DRAINING.get():
            if not self.fresh():
                self.stale_writes += 1
                return
        else:
            self.seeks += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.seeks += 1
        super().__delitem__(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.seeks += 1
        super().update(*args, **kwargs)

    def pop(self, key: Any, *default: Any) -> Any:
        self.seeks += 1
        return super().pop(key, *default)


def install() -> None:
    """Install the corrections (see the module docstring); idempotent."""
    if wrapped(Consumer.ack, _MARK):
        return
    wrap(Consumer, "__init__", _with_read_offsets, _MARK)
    wrap(Consumer, "_drain_messages", _draining, _MARK)
    wrap(Consumer, "_wait_next_records", _batch_requested, _MARK)
    wrap(Consumer, "_add_gap", _gaps_of_fresh_batches, _MARK)
    wrap(Consumer, "ack", _tracked_only, _MARK)
    wrap(FlowControlEvent, "resume", _resume_once, _MARK)
    wrap(AIOKafkaConsumerThread, "_create_worker_consumer", _fetch_wait, _MARK)


def _with_read_offsets(original: Any) -> Any:
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._read_offset = ReadOffsets()

    return init


def _draining(original: Any) -> Any:
    async def _drain_messages(self: Any, fetcher: Any) -> None:
        _DRAINING.set(True)  # this task's context only: the fetch loop's own task
        await original(self, fetcher)

    return _drain_messages


def _batch_requested(original: Any) -> Any:
    async def _wait_next_records(self: Any, timeout: float) -> Any:
        offsets = self._read_offset
        if isinstance(offsets, ReadOffsets):
            offsets.batch_seeks = offsets.seeks
        return await original(self, timeout)

    return _wait_next_records


def _gaps_of_fresh_batches(original: Any) -> Any:
    async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        offsets = self._read_offset
        if isinstance(offsets, ReadOffsets) and not offsets.fresh():
            return  # measured against a position the seek moved: not a gap in the log
        await original(self, tp, offset_from, offset_to)

    return _add_gap


def _tracked_only(original: Any) -> Any:
    def ack(self: Any, message: Any) -> bool:
        if not message.tracked:
            return False  # skipped by a stream, never processed: read again after the seek
        return bool(original(self, message))

    return ack


def _resume_once(original: Any) -> Any:
    def resume(self: Any) -> None:
        if self.is_active():
            return  # already on: its queues hold input fetched since, keep it
        original(self)

    return resume


def _fetch_wait(original: Any) -> Any:
    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        wait = getattr(self.app, FETCH_WAIT_ATTR, None)
        if wait is not None:
            consumer._fetch_max_wait_ms = int(wait)
        return consumer

    return create_worker_consumer
