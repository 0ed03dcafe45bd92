"""The live worker: a Faust app whose agent hands raw Kafka messages to the pipeline.

``driftwatch run`` builds it with :func:`build_worker`. Values are consumed as raw bytes and
parsed by driftwatch (no Faust Records, no pickle). Checkpoints live in a Faust table backed by
a changelog topic (``<group_id>-checkpoints-changelog``), co-partitioned with the input topics,
so a restarted or rebalanced worker restores each model version's state from it. Faust's own
web server is disabled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
import weakref
from collections.abc import AsyncIterable, Awaitable, Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Any, cast

import faust
import orjson
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from faust.exceptions import ProducerSendError
from faust.streams import _current_event  # the ContextVar behind faust.current_event()
from mode import Service

from alerting.sinks import AlertSink
from detectors.profile import ReferenceProfile
from monitor import faust_fixes
from monitor.broker_watch import BrokerWatch, install_repeat_filter
from monitor.config import Settings
from monitor.dead_letters import DeadLetterTooLargeError
from monitor.gctune import fewer_collections
from monitor.http_server import Observability
from monitor.kafka_adapter import BATCH_SECONDS, KafkaAdapter
from monitor.kafka_security import sasl_password, ssl_context
from monitor.pipeline import Pipeline
from monitor.recovery_watchdog import RecoveryWatchdog, Verdict
from monitor.streams import StreamKey

log = logging.getLogger("driftwatch.worker")

#: Most bytes of changelog records the worker's producer sends as one batch per partition.
PRODUCER_BATCH_BYTES = 1 << 20


def broker_credentials(settings: Settings) -> Any:
    """Faust credentials for the configured security protocol (``None`` for PLAINTEXT)."""
    cfg = settings.kafka
    ctx = ssl_context(cfg)
    password = sasl_password(cfg)
    if password is not None:
        return faust.SASLCredentials(
            username=cfg.sasl_username or "",
            password=password.value,
            mechanism=cfg.sasl_mechanism,
            ssl_context=ctx,
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


def json_bytes(value: Any) -> bytes:
    """Compact JSON of ``value`` as ``json.dumps`` reads it back: made by orjson (a tenth of
    the time) when its document decodes to ``value`` again, else by ``json.dumps``. orjson
    writes NaN and infinities as ``null`` and refuses keys that are not strings; detector
    state may hold an infinity, which ``json.dumps`` writes as ``Infinity``.

    >>> json_bytes({"a": [1, 0.5]}), json_bytes({"a": float("inf")})
    (b'{"a":[1,0.5]}', b'{"a":Infinity}')
    """
    try:
        raw = orjson.dumps(value)
    except TypeError:
        raw = None
    if raw is None or orjson.loads(raw) != value:
        return json.dumps(value, separators=(",", ":")).encode()
    return raw


class CheckpointTable(MutableMapping[str, Any]):
    """Checkpoints by stream group, stored as JSON bytes in a changelog-backed Faust table."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._written: dict[bytes, bytes] = {}
        # The JSON of learned reference profiles, by the identity of their (frozen, cached)
        # ``json_dict``: a stream's profile is half of every checkpoint it writes (7 KB, 130 µs
        # of ``json.dumps`` per window) and never changes.
        self._profiles: dict[int, tuple[Any, bytes]] = {}

    def __getitem__(self, group: str) -> Any:
        raw = self.table.get(group.encode())
        if raw is None:
            raise KeyError(group)
        return json.loads(raw)

    def __setitem__(self, group: str, state: Any) -> None:
        key = group.encode()
        raw = self._encode(state)
        self.table[key] = raw
        self._written[key] = raw

    def _encode(self, state: Any) -> bytes:
        """The JSON of ``state`` (:func:`json_bytes`), with a ``profile`` member's JSON made
        once per profile object and spliced in (as the last member)."""
        profile = state.get("profile") if type(state) is dict else None
        if profile is None:
            return json_bytes(state)
        cached = self._profiles.get(id(profile))
        if cached is None or cached[0] is not profile:
            if len(self._profiles) >= 256:
                self._profiles.clear()
            cached = self._profiles[id(profile)] = (profile, json_bytes(profile))
        rest = json_bytes({k: v for k, v in state.items() if k != "profile"})
        sep = b"" if rest == b"{}" else b","
        return b"".join((rest[:-1], sep, b'"profile":', cached[1], b"}"))

    def __delitem__(self, group: str) -> None:
        key = group.encode()
        del self.table[key]
        self._written.pop(key, None)

    def foreign(self, group: str) -> Any:
        """The checkpoint of ``group`` unless it is the one this table wrote last (``None``
        then, and when there is none): what another worker, or an earlier run through the
        changelog, stored. A byte comparison instead of decoding about 17 KB of JSON for
        every batch (see ``Pipeline._current``)."""
        key = group.encode()
        raw = self.table.get(key)
        if raw is None or raw == self._written.get(key):
            return None
        return json.loads(raw)

    def stream_evicted(self, stream: Any) -> None:
        """The pipeline evicted ``stream``: forget the copy of its last write. The checkpoint
        itself stays (tombstoned it would go to the changelog partition of the message being
        processed, not the stream's); if the version comes back, it resumes from it."""
        self._written.pop(stream.group.encode(), None)

    def __iter__(self) -> Iterator[str]:
        return (k.decode() for k in list(self.table.keys()))

    def __len__(self) -> int:
        return len(self.table)


def _too_large(exc: BaseException) -> BaseException:
    """``exc`` as :class:`DeadLetterTooLargeError` when Kafka refused a record for its size
    (the producer's own check, or the broker's ``MESSAGE_TOO_LARGE`` for the topic's
    ``max.message.bytes``)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, MessageSizeTooLargeError | RecordTooLargeError):
            return DeadLetterTooLargeError(str(cause))
        cause = cause.__cause__
    return exc


async def _written(sent: Awaitable[Any]) -> Any:
    """Await a record's delivery future, its size errors as :class:`DeadLetterTooLargeError`."""
    try:
        return await sent
    except (MessageSizeTooLargeError, RecordTooLargeError, ProducerSendError) as exc:
        raise _too_large(exc) from exc


def _enter(event: Any) -> None:
    """Make ``event`` Faust's current event, as stream iteration does, so that table writes
    (checkpoints) made for it go to its changelog partition (``Table.partition_for_key``)."""
    _current_event.set(weakref.ref(event))


#: Seconds between looks at whether a rebalance is over, while input waits for it.
SETTLE_POLL_S = 0.05
#: Seconds between probes of the bootstrap servers while no input arrives (``/readyz``).
PROBE_EVERY = 5
#: Attribute of a Faust app holding its :class:`RecoveryWatchdog`.
WATCHDOG_ATTR = "driftwatch_recovery_watchdog"


def _broker_url(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def build_app(
    settings: Settings,
    references: dict[StreamKey, ReferenceProfile],
    sinks: Sequence[AlertSink],
    stats_path: str | None = None,
    observability: Observability | None = None,
) -> tuple[faust.App, KafkaAdapter]:
    """The Faust app with its one agent, and the adapter it feeds (for status and tests);
    ``observability`` gets the pipeline's windows, every message and the consumer's lag."""
    k = settings.kafka
    t = settings.topics
    datadir = k.state_dir()
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        k.group_id,
        datadir=str(datadir),
        broker=_broker_url(k.bootstrap_servers),
        broker_credentials=broker_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        topic_partitions=k.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        producer_max_request_size=max(k.max_message_bytes, 1 << 20),
        # Checkpoints of several windows per produce request (see KafkaConfig).
        producer_linger=k.producer_linger_ms / 1000,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        # Per-partition fetch size (16 MiB by default): fetch round trips cost the worker a lot,
        # 1 MiB ran envelopes at 0.74x the rate (48 MiB: 0.97x, i.e. no gain).
        consumer_max_fetch_size=max(k.max_message_bytes, 1 << 20),
        broker_commit_every=1000,
        # A worker that stopped is noticed within the session timeout (Faust's default: 60 s).
        broker_session_timeout=k.session_timeout_ms / 1000,
        broker_heartbeat_interval=k.heartbeat_interval_ms / 1000,
        # Messages stay unacknowledged until their window is checkpointed; re-delivery after a
        # rebalance is idempotent, so a rebalance or shutdown must not wait for them.
        stream_wait_empty=False,
        broker_commit_interval=1.0,
        loghandlers=[],
    )
    faust_fixes.install()
    setattr(app, faust_fixes.FETCH_WAIT_ATTR, k.fetch_max_wait_ms)
    table = CheckpointTable(
        app.Table(
            "checkpoints",
            default=None,
            partitions=k.partitions,
            key_type=bytes,  # bytes means the "raw" codec, for the changelog and its recovery
            value_type=bytes,
            # Room for a checkpoint with collected events (kafka.max_unacked_messages).
            extra_topic_configs={"max.message.bytes": str(k.max_message_bytes)},
        )
    )
    source = app.topic(
        t.predictions,
        t.features,
        t.labels,
        value_serializer="raw",
        key_serializer="raw",
        partitions=k.partitions,
    )

    async def dead_letter(
        key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Awaitable[Any]:
        # The producer itself, not a Faust topic: its future says whether Kafka wrote the
        # record, and the adapter acknowledges the source only after it did.
        try:
            sent = await app.producer.send(t.dead_letter, key, value, None, None, headers)
        except ProducerSendError as exc:
            raise _too_large(exc) from exc
        return _written(sent)

    pipeline = Pipeline(
        settings,
        references,
        checkpoints=table.get,
        foreign_checkpoints=table.foreign,
        checkpointing=True,
        observers=observability.observers if observability is not None else (),
        on_evict=[table.stream_evicted],
    )
    all_sinks = [*sinks, *(observability.sinks if observability is not None else ())]
    adapter = KafkaAdapter(
        pipeline, table, dead_letter, all_sinks, k.max_message_bytes, observability, _enter
    )

    @app.agent(source, name="driftwatch-monitor")
    async def monitor(stream: AsyncIterable[Any]) -> None:
        # Messages are buffered and processed in batches (see KafkaAdapter.add); the timer
        # below flushes a batch that no further message completes.
        # What ``stream.noack().events()`` does, without its extra async generator per message.
        manual = stream.noack()  # type: ignore[attr-defined]
        try:
            async for _ in manual:
                event = manual.current_event
                if event is not None and adapter.add(event.message, event.value, event.ack, event):
                    await settled()
                    await adapter.flush()
        finally:
            # A graceful stop: everything processed is checkpointed and acknowledged before
            # Faust's final commit, so a restart reads nothing twice. Not in the middle of a
            # rebalance: the buffered input is read again from the committed offsets.
            if not app.rebalancing:
                await adapter.drain()

    async def settled() -> None:
        # Faust may hand on input of newly assigned partitions before their recovery is over
        # (the table may not hold their checkpoints yet) and before it seeks them back to
        # the committed offsets. Such input waits in the buffer until the rebalance is over;
        # whatever the seek re-reads is then recognised as delivered again.
        while app.rebalancing:
            await asyncio.sleep(SETTLE_POLL_S)

    inputs = (t.predictions, t.features, t.labels)

    revoked: set[int] = set()

    async def give_up(*args: Any, **__: Any) -> None:
        # Every rebalance revokes all partitions, then assigns (eager protocol): remember
        # them; what is not assigned again is released once the assignment is known.
        tps = args[1] if len(args) > 1 else ()  # (sender, revoked)
        revoked.update(tp.partition for tp in tps if tp.topic in inputs)

    async def take_over(*_: Any, **__: Any) -> None:
        # After every assignment's table recovery (the first one too). Partitions that moved
        # to another worker are released: what this worker held of them is dropped, so that
        # it never re-sends alerts the other owns now. The alerts (and label waits) held in
        # the checkpoints of the assigned partitions are taken over at once
        # (KafkaAdapter.adopt), before Alertmanager lets them expire.
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic in inputs}
        moved = revoked - assigned
        revoked.clear()
        try:
            if moved:
                n = await adapter.release(moved)
                log.info("released %d model versions of partitions %s", n, sorted(moved))
            n = await adapter.adopt(assigned)
        except Exception:  # a damaged checkpoint must not stop the worker's recovery
            log.exception("cannot take over the alerts of partitions %s", sorted(assigned))
            return
        if n:
            log.info(
                "took over the alerts of %d model versions (partitions %s)", n, sorted(assigned)
            )

    app.on_partitions_revoked.connect(give_up)
    app.on_rebalance_complete.connect(take_over)

    @app.timer(BATCH_SECONDS)  # type: ignore[untyped-decorator]
    async def flush_batch() -> None:
        if adapter.stale() and not app.rebalancing:
            await adapter.flush()

    brokers = BrokerWatch(k.bootstrap_servers, k.unready_after)
    seen = {"messages": -1, "ticks": 0}

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def watch_brokers() -> None:
        install_repeat_filter()  # again: Faust's worker sets up its own log handlers
        seen["ticks"] += 1
        if adapter.stats.messages != seen["messages"]:  # input flows: a broker answers
            seen["messages"] = adapter.stats.messages
            brokers.seen(True)
        elif seen["ticks"] % PROBE_EVERY == 0:
            # A TCP connection without a Kafka request: rare, so that a TLS listener does not
            # log a failed handshake every second.
            await brokers.probe()

    if observability is not None:
        obs = observability
        obs.attach(pipeline, adapter, sinks)
        obs.brokers = brokers

        @app.timer(1.0)  # type: ignore[untyped-decorator]
        async def poll_consumer() -> None:
            await obs.poll_consumer(app.consumer, inputs, bool(getattr(app, "in_recovery", 0)))

    # Checked by a service of the worker (run_worker): app timers only start once the first
    # recovery is complete.
    watchdog = RecoveryWatchdog(k.recovery_stall_seconds)
    setattr(app, WATCHDOG_ATTR, watchdog)

    if stats_path:

        @app.timer(1.0)  # type: ignore[untyped-decorator]
        async def write_stats() -> None:
            _write_json(stats_path, {**adapter.status(), "recovery_restarts": watchdog.restarts})

    return app, adapter


def _write_json(path: str, body: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    Path(tmp).write_text(json.dumps(body, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


class RecoveryWatch(Service):
    """Checks the app's :class:`RecoveryWatchdog` every second, from the worker's start (an app
    timer would start only after the first recovery); stops the worker when it gives up."""

    def __init__(self, app: faust.App, watchdog: RecoveryWatchdog) -> None:
        super().__init__()
        self.app = app
        self.watchdog = watchdog

    @Service.timer(1.0)
    async def _check(self) -> None:
        if self.watchdog.gave_up:
            return  # stopping
        if (
            self.watchdog.check(cast(Any, self.app.tables).recovery, time.monotonic())
            is Verdict.GIVE_UP
        ):
            os.kill(os.getpid(), signal.SIGTERM)  # a graceful stop; run_worker exits with 1


def run_worker(app: faust.App, loglevel: str = "warning") -> None:
    """Run the Faust worker in the foreground until SIGINT/SIGTERM (exit status 1 when table
    recovery stalled for good, see :mod:`monitor.recovery_watchdog`)."""
    from faust.worker import Worker

    asyncio.set_event_loop(asyncio.new_event_loop())
    watchdog = getattr(app, WATCHDOG_ATTR, None)
    services = [RecoveryWatch(app, watchdog)] if watchdog is not None else []
    worker = Worker(app, *services, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None  # no terminal escape codes in logs
    try:
        with fewer_collections():
            worker.execute_from_commandline()
    except SystemExit as exc:
        if watchdog is not None and watchdog.gave_up:
            raise SystemExit(
                "driftwatch: table recovery made no progress (see the log); exiting so that "
                "the worker is started again"
            ) from exc
        raise
