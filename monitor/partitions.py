"""What the Kafka adapter does when its partitions change hands: assigned (:meth:`adopt` the
alerts and label waits their checkpoints hold), revoked (:meth:`release` what it held of them)
and at a graceful stop (:meth:`drain`: checkpoint and acknowledge everything processed).

Mixed into :class:`monitor.kafka_adapter.KafkaAdapter`; the worker's Faust app calls these from
its rebalance signals and its agent's ``finally``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection, Mapping, MutableMapping
from dataclasses import replace
from typing import Any

from alerting.sinks import AlertSink
from alerting.types import Transition
from monitor.adapter_types import INDEX_BITS
from monitor.checkpointing import taken_over
from monitor.pipeline import Pipeline


class PartitionLifecycle:
    """Partition assignment, revocation and graceful stop (see the module docstring); the
    adapter provides the attributes below, :meth:`flush`, :meth:`_deliver` and
    :meth:`_settle`."""

    pipeline: Pipeline
    table: MutableMapping[str, Any]
    sinks: list[AlertSink]
    enter: Callable[[Any], None] | None
    _flushing: asyncio.Lock
    _buffer: list[Any]
    _buffer_bytes: int
    _unacked: dict[str, deque[tuple[int, Callable[[], Any]]]]
    _contexts: dict[str, Any]
    _touched: set[str]

    async def flush(self) -> None:
        raise NotImplementedError

    def _deliver(self, transitions: list[Transition]) -> None:
        raise NotImplementedError

    async def _settle(self) -> None:
        raise NotImplementedError

    async def adopt(self, partitions: Collection[int]) -> int:
        """Input ``partitions`` were assigned (at start, after a restart, or taken over from
        another worker) and their checkpoints recovered: take over the alerts they hold active
        now, without waiting for input, and have the sinks that keep alerts (Alertmanager, the
        alert gauges) told again (:meth:`Pipeline.adopt`). Returns how many streams' alerts."""
        async with self._flushing:  # not in the middle of a batch
            states: dict[str, Any] = {}
            for group in list(self.table):
                state = self.table.get(group)
                if state and taken_over(state, partitions):
                    states[group] = state
            resumed = self.pipeline.adopt(states)
            if resumed:
                shifted = [replace(t, offset=t.offset >> INDEX_BITS) for t in resumed]
                for sink in self.sinks:
                    resume = getattr(sink, "resume", None)
                    if resume is not None:
                        resume(shifted)
            return len(states)

    async def release(self, partitions: Collection[int]) -> int:
        """Input ``partitions`` were revoked (a rebalance): drop their buffered and
        unacknowledged messages (the next owner reads them from the committed offset),
        forget the streams fed only from them (:meth:`Pipeline.release`) and have the sinks
        stop re-sending their alerts without resolving them. Returns how many streams."""
        revoked = set(partitions)
        async with self._flushing:
            self._buffer = [item for item in self._buffer if item[0].partition not in revoked]
            self._buffer_bytes = sum(len(item[1] or b"") for item in self._buffer)
            for source in list(self._unacked):
                if int(source.rpartition("/")[2]) in revoked:
                    del self._unacked[source]
                    self._contexts.pop(source, None)
            gone = set(self.pipeline.release(revoked))
            if gone:

                def owned(labels: Mapping[str, str]) -> bool:
                    return (labels.get("model", ""), labels.get("model_version", "")) in gone

                for sink in self.sinks:
                    withdraw = getattr(sink, "withdraw", None)
                    if withdraw is not None:
                        withdraw(owned)
            return len(gone)

    async def drain(self) -> int:
        """Before a graceful stop: process what is buffered, then checkpoint every stream with
        its collected events, so that every message processed is acknowledged and the final
        commit covers it. After the restart nothing is read twice: no dead letter or
        rejection is repeated. Returns how many streams were checkpointed."""
        await self.flush()
        async with self._flushing:
            taken = 0
            for source, queue in self._unacked.items():
                if not queue:
                    continue
                context = self._contexts.get(source)
                if self.enter is not None and context is not None:
                    self.enter(context)  # their changelog partition
                taken += self.pipeline.checkpoint_collected(source, 1 << 62)
                self._deliver([])
                self._touched.add(source)
            await self._settle()
            return taken
