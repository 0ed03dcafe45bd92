"""``driftwatch run`` end to end through a real Kafka broker, next to a bare Faust agent and a raw
aiokafka loop reading the same topic in the same run.

A single-node broker is started with ``deploy/kafka/kafka.sh`` on free 127.0.0.1 ports in its own
data directory (:func:`tests.kafka_broker.start_broker`) and stopped by PID at the end. Steady
25-feature prediction events from :mod:`monitor.scenarios.simulate` are pre-produced with
kafka-python (keyed ``fraud``) to two topics with unique names, each with **one partition**:

* single-event messages: 20,000 messages of one event (5,000 with ``--quick``);
* envelopes: 200,000 events in ``{"events": [...]}`` envelopes of 500 (50,000 with ``--quick``).

Each topic is then consumed from the beginning, one consumer process at a time, by:

* ``driftwatch run`` (``monitor.cli.main(["run", ...])`` in a subprocess: ensure_topics, the Faust
  app of :func:`monitor.app.build_app` with its checkpoint table and changelog, metrics server on
  a free port, ``--stats`` file), with a fresh consumer group and dead-letter topic every time;
* a bare Faust agent that only counts messages (``async for value in stream``), with the Faust
  settings of ``monitor/app.py`` (raw key/value serializers, memory store, web disabled, same
  fetch size and commit settings; no table) and run by :func:`monitor.app.run_worker`;
* a raw ``aiokafka`` loop: ``getmany`` and ``orjson.loads`` of every value (for an envelope,
  ``len(body["events"])``), without a consumer group, same fetch size as Faust;

and, for the breakdown, the same message values go through the worker's agent code
(``KafkaAdapter.add``, ``flush`` when the batch is full) in this process without Kafka or Faust
(wired as ``build_app`` wires it: checkpoint table, metrics observers), so "driftwatch's own
work" and "what Kafka + Faust add" can be told apart.

Every consumer runs as ``python -c`` calling :func:`child_main`, which records
``time.monotonic()`` (system-wide, so comparable with the parent's spawn time) at: interpreter up,
app built (after ensure_topics, before Faust starts), partitions assigned (Faust's
``on_partitions_assigned`` signal), first message processed and last message processed. In the
worker this is a wrapper around ``KafkaAdapter.handle_many`` (one extra ``await`` per batch) and
around ``run_worker``; nothing else is changed. The rate is events after the first processed
message over the time from it to the last one, so process start-up, the group join / rebalance,
table recovery and the first fetch are excluded from it and reported separately. The order of
the consumers rotates from round to round; ratios are the median of per-round ratios.

After the timed rounds one more worker run per payload is profiled with cProfile from its first
to its last message, in both the main thread (Faust streams, the agent, driftwatch) and Faust's
consumer thread (aiokafka fetches), enabled in each thread from within it; printed as the
cumulative time of the main parts (:data:`BREAKDOWN`) and the top functions by self time.

Targets: single-event messages at least 0.8x the bare Faust agent; envelopes at least 100,000
events/s for the one worker.
"""

from __future__ import annotations

import contextlib
import cProfile
import json
import os
import pstats
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.benchmarks.harness import (
    REPO_ROOT,
    BenchResult,
    Context,
    Rate,
    Row,
    log,
    profile_lines,
    ratio_row,
    short_path,
)

if TYPE_CHECKING:
    from monitor.http_server import Observability
    from monitor.kafka_adapter import KafkaAdapter
    from monitor.pipeline import Pipeline

TARGET_SINGLE_VS_FAUST = 0.8
TARGET_ENVELOPE_EVENTS_PER_S = 100_000.0
ENVELOPE_SIZE = 500
PARTITIONS = 1
SEED = 0
FETCH_BYTES = 16 << 20  # monitor/app.py: consumer_max_fetch_size = max(max_message_bytes, 1 MiB)
CONSUME_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
TOP = 12
PRINT_TOP = 8
PRINT_TOP_CONSUMER = 4
CONSUMERS = ("worker", "faust", "aiokafka", "adapter")
#: The processes that consume from Kafka (the adapter runs in this process, without Kafka).
SUBPROCESSES = ("worker", "faust", "aiokafka")
LABELS = {
    "worker": "driftwatch run",
    "faust": "bare Faust agent",
    "aiokafka": "aiokafka getmany+orjson",
    "adapter": "KafkaAdapter in-process",
}
_CHILD = "import sys; from tests.benchmarks.kafka_e2e import child_main; child_main(sys.argv[1:])"


# -- the consumer processes ----------------------------------------------------------------------


class _Recorder:
    """Time marks of one consumer process, written as JSON when the last message is processed."""

    def __init__(self, path: str, expected: int) -> None:
        self.path = path
        self.expected = expected
        self.marks: dict[str, float] = {"child_start": time.monotonic()}
        self.first: float | None = None
        self.count_first = 0
        self.cpu_first = 0.0
        self.main_cpu_first = 0.0
        self.done = False
        self.on_first: list[Callable[[], None]] = []
        self.on_last: list[Callable[[], None]] = []

    def mark(self, name: str) -> None:
        """Record ``name`` at now, the first time only."""
        self.marks.setdefault(name, time.monotonic())

    def seen(self, count: int) -> None:
        """``count`` events processed so far (called after every message)."""
        if self.first is None:
            self.first = time.monotonic()
            self.count_first = count
            self.cpu_first = time.process_time()
            self.main_cpu_first = time.thread_time()
            for fn in self.on_first:
                fn()
        if count < self.expected or self.done:
            return
        last = time.monotonic()
        cpu = time.process_time() - self.cpu_first
        main_cpu = time.thread_time() - self.main_cpu_first
        self.done = True
        for fn in self.on_last:
            fn()
        body = {
            "marks": {**self.marks, "first": self.first, "last": last},
            "count_first": self.count_first,
            "count_last": count,
            "cpu_s": cpu,
            "main_thread_cpu_s": main_cpu,
        }
        tmp = f"{self.path}.tmp"
        Path(tmp).write_text(json.dumps(body), encoding="utf-8")
        os.replace(tmp, self.path)


def _watch_assignment(app: Any, rec: _Recorder) -> None:
    async def assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
        rec.mark("assigned")

    app.on_partitions_assigned.connect(assigned)


def _install_profilers(app: Any, rec: _Recorder, prefix: str) -> None:
    """cProfile the main thread and Faust's consumer thread from first to last message."""
    main_prof = cProfile.Profile()
    consumer_prof = cProfile.Profile()

    def thread_loop() -> Any:
        return app.consumer._thread.thread_loop

    def start() -> None:
        main_prof.enable()
        thread_loop().call_soon_threadsafe(consumer_prof.enable)

    def stop() -> None:
        main_prof.disable()
        off = threading.Event()

        def disable() -> None:
            consumer_prof.disable()
            off.set()

        thread_loop().call_soon_threadsafe(disable)
        off.wait(5.0)
        main_prof.dump_stats(f"{prefix}.main.prof")
        consumer_prof.dump_stats(f"{prefix}.consumer.prof")

    rec.on_first.append(start)
    rec.on_last.append(stop)


def _worker_child(rec: _Recorder, profile: str, run_args: list[str]) -> None:
    import monitor.app as app_module
    from monitor.cli import main
    from monitor.kafka_adapter import KafkaAdapter

    handle_many = KafkaAdapter.handle_many

    async def timed_handle_many(self: KafkaAdapter, items: Any) -> None:
        await handle_many(self, items)
        rec.seen(self.pipeline.stats.accepted)

    run_worker = app_module.run_worker

    def timed_run_worker(app: Any, loglevel: str = "warning") -> None:
        rec.mark("app_built")
        _watch_assignment(app, rec)
        if profile != "-":
            _install_profilers(app, rec, profile)
        run_worker(app, loglevel)

    setattr(KafkaAdapter, "handle_many", timed_handle_many)  # noqa: B010 - mypy refuses `=`
    app_module.run_worker = timed_run_worker
    sys.exit(main(["run", *run_args]))


def _faust_child(
    rec: _Recorder, bootstrap: str, topic: str, group: str, per_message: int, partitions: int
) -> None:
    import faust

    from monitor.app import run_worker

    # The settings of monitor.app.build_app (max_message_bytes at its 16 MiB default).
    app = faust.App(
        group,
        broker=[f"kafka://{bootstrap}"],
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        topic_partitions=partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        producer_max_request_size=FETCH_BYTES,
        consumer_max_fetch_size=FETCH_BYTES,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        loghandlers=[],
    )
    source = app.topic(topic, value_serializer="raw", key_serializer="raw", partitions=partitions)
    count = 0

    @app.agent(source, name="count")
    async def counter(stream: Any) -> None:
        nonlocal count
        async for _value in stream:
            count += per_message
            rec.seen(count)

    _watch_assignment(app, rec)
    rec.mark("app_built")
    run_worker(app)


async def _aiokafka_loop(
    rec: _Recorder, bootstrap: str, topic: str, partitions: int, envelope: bool
) -> None:
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="driftwatch-bench-aiokafka",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=FETCH_BYTES,
        fetch_max_wait_ms=1500,
    )
    rec.mark("app_built")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        rec.mark("assigned")
        loads = orjson.loads
        n = 0
        while not rec.done:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    body = loads(record.value or b"")
                    n += len(body["events"]) if envelope else 1
                    rec.seen(n)
    finally:
        await consumer.stop()


def child_main(argv: list[str]) -> None:
    """Subprocess entry: ``MODE TIMING_FILE EXPECTED_EVENTS ARGS...`` (see the callers)."""
    mode, timing, expected, *rest = argv
    rec = _Recorder(timing, int(expected))
    if mode == "worker":
        _worker_child(rec, rest[0], rest[1:])
    elif mode == "faust":
        bootstrap, topic, group, per_message, partitions = rest
        _faust_child(rec, bootstrap, topic, group, int(per_message), int(partitions))
    elif mode == "aiokafka":
        import asyncio

        bootstrap, topic, partitions, envelope = rest
        asyncio.run(_aiokafka_loop(rec, bootstrap, topic, int(partitions), envelope == "1"))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


# -- the parent ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Payload:
    """One pre-produced input topic (plus the worker's empty features/labels topics)."""

    name: str
    title: str
    topic: str
    features: str
    labels: str
    messages: int
    events: int
    nbytes: int
    produce_s: float
    values: list[bytes] = field(repr=False, compare=False)

    @property
    def per_message(self) -> int:
        """Events in each message."""
        return self.events // self.messages


@dataclass(slots=True)
class RunResult:
    """One consumer process over one payload."""

    consumer: str
    payload: str
    events_per_s: float
    consume_s: float
    startup_s: float
    phases: dict[str, float]
    cpu_s: float
    main_thread_cpu_s: float
    stop_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Every field."""
        return {
            "consumer": self.consumer,
            "payload": self.payload,
            "events_per_s": self.events_per_s,
            "consume_s": self.consume_s,
            "startup_s": self.startup_s,
            "phases_s": self.phases,
            "cpu_s": self.cpu_s,
            "cpu_utilisation": self.cpu_s / self.consume_s,
            "main_thread_cpu_s": self.main_thread_cpu_s,
            "stop_s": self.stop_s,
            **self.extra,
        }


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"


class _Child:
    """One ``python -c`` consumer process, its log and its timing file."""

    def __init__(self, workdir: Path, name: str, args: list[str]) -> None:
        self.workdir = workdir
        self.name = name
        self.log = workdir / f"{name}.log"
        self.timing = workdir / f"{name}.timing.json"
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned = 0.0

    def start(self, mode: str, expected: int) -> None:
        with open(self.log, "wb") as logf:
            self.spawned = time.monotonic()
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, mode, str(self.timing), str(expected), *self.args],
                # Faust puts its data directory (``<app id>-data``) in the working directory.
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)},
            )

    def wait_timing(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.timing.exists():
                return dict(json.loads(self.timing.read_text(encoding="utf-8")))
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{_tail(self.log)}"
                )
            time.sleep(0.02)
        raise RuntimeError(f"{self.name}: no last message after {timeout:.0f} s\n{_tail(self.log)}")

    def stop(self) -> float:
        """SIGTERM (SIGKILL after a timeout) by PID; the seconds it took to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        start = time.monotonic()
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        return time.monotonic() - start


def _lines_in_messages(lines: Iterable[bytes], size: int) -> Iterator[tuple[bytes, bytes]]:
    """Keyed messages: single events (``size`` 1) or envelopes of ``size`` events."""
    batch: list[bytes] = []
    for line in lines:
        if size == 1:
            yield b"fraud", line
            continue
        batch.append(line)
        if len(batch) == size:
            yield b"fraud", b'{"events":[' + b",".join(batch) + b"]}"
            batch = []
    if batch:
        yield b"fraud", b'{"events":[' + b",".join(batch) + b"]}"


def _produce_payload(bootstrap: str, name: str, title: str, events: int, size: int) -> Payload:
    from monitor.scenarios.simulate import generate
    from tests.worker_proc import Topics, produce

    topics = Topics.fresh(f"bench-{name}")
    topics.create(bootstrap, PARTITIONS)
    values: list[bytes] = []

    def kept() -> Iterator[tuple[bytes, bytes]]:
        for key, value in _lines_in_messages(generate("steady", events, SEED).lines(), size):
            values.append(value)
            yield key, value

    start = time.perf_counter()
    messages = produce(bootstrap, topics.predictions, kept())
    return Payload(
        name,
        title,
        topics.predictions,
        topics.features,
        topics.labels,
        messages,
        events,
        sum(map(len, values)),
        time.perf_counter() - start,
        values,
    )


def _phases(spawned: float, marks: dict[str, float]) -> dict[str, float]:
    order = ["child_start", "app_built", "assigned", "first"]
    names = {
        "child_start": "interpreter",
        "app_built": "imports_and_setup",
        "assigned": "start_and_rebalance",
        "first": "recovery_and_first_fetch",
    }
    out: dict[str, float] = {}
    prev = spawned
    for key in order:
        if key in marks:
            out[names[key]] = marks[key] - prev
            prev = marks[key]
    return out


@dataclass(frozen=True, slots=True)
class _Msg:
    """The parts of a Kafka message that the adapter reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None


def bench_adapter() -> tuple[KafkaAdapter, Pipeline, Observability]:
    """``(adapter, pipeline, observability)``: the worker's agent code without Kafka or Faust,
    wired as ``monitor.app.build_app`` wires it (checkpoint table as JSON in a dict, metrics
    observers); feed it with ``adapter.add``/``adapter.flush`` and close the observability."""
    from monitor.app import CheckpointTable
    from monitor.config import Settings
    from monitor.http_server import Observability
    from monitor.kafka_adapter import KafkaAdapter
    from monitor.pipeline import Pipeline

    settings = Settings()
    obs = Observability(settings)
    table = CheckpointTable({})
    pipeline = Pipeline(
        settings,
        {},
        checkpoints=table.get,
        checkpointing=True,
        observers=obs.observers,
        foreign_checkpoints=table.foreign,
    )

    async def dead_letter(
        key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        raise RuntimeError("dead letter in the benchmark input")

    adapter = KafkaAdapter(
        pipeline, table, dead_letter, obs.sinks, settings.kafka.max_message_bytes, obs
    )
    obs.attach(pipeline, adapter, [])
    return adapter, pipeline, obs


def _run_adapter(payload: Payload) -> RunResult:
    """:func:`bench_adapter` over the same message values, in this process."""
    import asyncio

    adapter, pipeline, obs = bench_adapter()

    def ack() -> None:
        pass

    async def feed() -> tuple[float, float, float]:
        add = adapter.add
        start = time.perf_counter()
        cpu = time.process_time()
        main = time.thread_time()
        for offset, value in enumerate(payload.values):
            if add(_Msg(payload.topic, 0, offset, b"fraud"), value, ack):
                await adapter.flush()
        await adapter.flush()
        return (
            time.perf_counter() - start,
            time.process_time() - cpu,
            time.thread_time() - main,
        )

    try:
        wall, cpu, main = asyncio.run(feed())
    finally:
        obs.close()
    if pipeline.stats.accepted != payload.events:
        raise RuntimeError(f"adapter accepted {pipeline.stats.accepted} of {payload.events}")
    return RunResult("adapter", payload.name, payload.events / wall, wall, 0.0, {}, cpu, main, 0.0)


def _run_consumer(
    consumer: str,
    payload: Payload,
    bootstrap: str,
    workdir: Path,
    tag: str,
    profile: Path | None = None,
) -> RunResult:
    from tests.kafka_broker import free_ports
    from tests.worker_proc import Topics

    if consumer == "adapter":
        return _run_adapter(payload)
    u = uuid.uuid4().hex[:8]
    name = f"{tag}-{consumer}-{payload.name}-{u}"
    group = f"bench-{consumer}-{payload.name}-{u}"
    stats: Path | None = None
    if consumer == "worker":
        topics = Topics(payload.topic, payload.features, payload.labels, f"bench-dlq-{u}", group)
        config = topics.config(workdir / f"{name}.yaml", bootstrap, PARTITIONS)
        stats = workdir / f"{name}.stats.json"
        (port,) = free_ports(1)
        args = [
            str(profile) if profile is not None else "-",
            "--config",
            str(config),
            "--stats",
            str(stats),
            "--metrics-listen",
            f"127.0.0.1:{port}",
        ]
    elif consumer == "faust":
        args = [bootstrap, payload.topic, group, str(payload.per_message), str(PARTITIONS)]
    else:
        envelope = "1" if payload.per_message > 1 else "0"
        args = [bootstrap, payload.topic, str(PARTITIONS), envelope]
    child = _Child(workdir, name, args)
    extra: dict[str, Any] = {}
    try:
        child.start(consumer, payload.events)
        timing = child.wait_timing(CONSUME_TIMEOUT_S)
        if stats is not None:
            extra["stats"] = _final_stats(stats, payload.events)
    finally:
        stop_s = child.stop()
    marks = timing["marks"]
    consume_s = marks["last"] - marks["first"]
    events = timing["count_last"] - timing["count_first"]
    return RunResult(
        consumer=consumer,
        payload=payload.name,
        events_per_s=events / consume_s if consume_s > 0 else float("nan"),
        consume_s=consume_s,
        startup_s=marks["first"] - child.spawned,
        phases=_phases(child.spawned, marks),
        cpu_s=timing["cpu_s"],
        main_thread_cpu_s=timing["main_thread_cpu_s"],
        stop_s=stop_s,
        extra=extra,
    )


def _final_stats(path: Path, expected: int, timeout: float = 3.0) -> dict[str, Any]:
    """The worker's ``--stats`` counters once they show every event (written once a second)."""
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            st = dict(json.loads(path.read_text(encoding="utf-8")))
        if st.get("accepted", 0) >= expected:
            break
        time.sleep(0.1)
    if st.get("rejected") or st.get("dead_letters"):
        raise RuntimeError(f"worker rejected input: {st}")
    keep = ("messages", "accepted", "rejected", "dead_letters", "windows", "checkpoints", "acked")
    return {k: st[k] for k in keep if k in st}


def _pstats_top(path: Path, units: float, unit: str, top: int) -> dict[str, Any]:
    """The ``top`` functions by self time of a cProfile dump, shaped like ``cprofile_top``."""
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = pstats.Stats(
        str(path)
    ).stats  # type: ignore[attr-defined]
    total_self = sum(v[2] for v in raw.values()) or 1.0
    ranked = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]

    def label(key: tuple[str, int, str]) -> str:
        file, line, func = key
        if file == "~":
            return func
        return f"{func} ({short_path(file)}:{line})"

    return {
        "tool": "cProfile (deterministic; adds overhead per Python call), first to last message",
        "total_self_s": total_self,
        "units": units,
        "top_self": [
            {
                "function": label(key),
                "self_s": tt,
                "self_pct": 100.0 * tt / total_self,
                "cumulative_s": ct,
                "calls": nc,
                f"self_us_per_{unit}": 1e6 * tt / units,
            }
            for key, (_cc, nc, tt, ct, _callers) in ranked
        ],
    }


#: (label, file suffix, function): where the worker's main thread spends its time, by cumulative
#: time (a coroutine's counts only while it runs, not while it waits).
BREAKDOWN = (
    (
        "driftwatch: KafkaAdapter.handle_many (all of driftwatch, per batch)",
        "monitor/kafka_adapter.py",
        "handle_many",
    ),
    ("  decode_message (msgspec)", "monitor/fastdecode.py", "decode_message"),
    ("  parse_message (pydantic, messages msgspec refused)", "monitor/events.py", "parse_message"),
    (
        "    pydantic_core from_json (envelope)",
        "~",
        "<built-in method pydantic_core._pydantic_core.from_json>",
    ),
    ("  Pipeline.process_events", "monitor/pipeline.py", "process_events"),
    ("    ModelStream.close_window (window statistics)", "monitor/streams.py", "close_window"),
    ("  CheckpointTable.__setitem__ (json.dumps + table)", "monitor/app.py", "__setitem__"),
    ("  Observability.begin_batch + end (metrics)", "monitor/http_server.py", "begin_batch|end"),
    ("  KafkaAdapter._ack_safe", "monitor/kafka_adapter.py", "_ack_safe"),
    (
        "faust: Consumer._drain_messages (conductor, decode)",
        "faust/transport/consumer.py",
        "_drain_messages",
    ),
    ("faust: Stream.events (stream iteration)", "faust/streams.py", "events"),
    ("asyncio: epoll.poll (idle, waiting)", "~", "<method 'poll' of 'select.epoll' objects>"),
)


def _pstats_breakdown(path: Path, units: float, unit: str) -> dict[str, Any]:
    """Cumulative time of the :data:`BREAKDOWN` functions in a cProfile dump."""
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = pstats.Stats(
        str(path)
    ).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    parts: list[dict[str, Any]] = []
    for label, suffix, names in BREAKDOWN:
        wanted = set(names.split("|"))
        cum = sum(
            v[3]
            for (file, _line, func), v in raw.items()
            if func in wanted and (file == suffix if suffix == "~" else file.endswith(suffix))
        )
        parts.append(
            {
                "part": label,
                "cumulative_s": cum,
                "cumulative_pct": 100.0 * cum / total,
                f"cumulative_us_per_{unit}": 1e6 * cum / units,
            }
        )
    top_level = sum(p["cumulative_s"] for p in parts if not str(p["part"]).startswith(" "))
    rest = max(total - top_level, 0.0)
    parts.append(
        {
            "part": "rest: event loop, task/future churn, agent glue, timers (remainder)",
            "cumulative_s": rest,
            "cumulative_pct": 100.0 * rest / total,
            f"cumulative_us_per_{unit}": 1e6 * rest / units,
        }
    )
    return {"total_s": total, "units": units, "parts": parts}


def _rate(runs: list[RunResult], consumer: str, payload: str) -> Rate:
    return Rate(
        tuple(r.events_per_s for r in runs if r.consumer == consumer and r.payload == payload)
    )


def _seconds(runs: list[RunResult], consumer: str, payload: str, key: str | None) -> list[float]:
    out = []
    for r in runs:
        if r.consumer == consumer and r.payload == payload:
            out.append(r.startup_s if key is None else r.phases.get(key, float("nan")))
    return out


def _time_row(metric: str, samples: list[float]) -> Row:
    import statistics

    return Row(metric, statistics.median(samples), min(samples), "s")


def run(ctx: Context) -> BenchResult:
    """Run the benchmark (see the module docstring)."""
    from tests.kafka_broker import start_broker, stop_broker

    data_dir = ctx.workdir / "kafka"
    data_dir.mkdir()
    log("kafka_e2e: starting a broker with deploy/kafka/kafka.sh")
    t0 = time.perf_counter()
    broker = start_broker(data_dir)
    broker_start_s = time.perf_counter() - t0
    try:
        return _measure(ctx, broker.bootstrap, broker_start_s)
    finally:
        log(f"kafka_e2e: stopping the broker (pid {broker.pid})")
        stop_broker(broker)


def _measure(ctx: Context, bootstrap: str, broker_start_s: float) -> BenchResult:
    single_n = 5_000 if ctx.quick else 20_000
    env_n = 50_000 if ctx.quick else 200_000
    log(f"kafka_e2e: broker on {bootstrap}; producing {single_n:,} single-event messages")
    single = _produce_payload(bootstrap, "single", f"single-event msgs ({single_n:,})", single_n, 1)
    log(f"kafka_e2e: producing {env_n:,} events in envelopes of {ENVELOPE_SIZE}")
    env = _produce_payload(
        bootstrap,
        "envelope",
        f"envelopes of {ENVELOPE_SIZE} ({env_n:,} events)",
        env_n,
        ENVELOPE_SIZE,
    )
    payloads = [single, env]
    repeats = ctx.reps(full=3, quick=2)
    runs: list[RunResult] = []
    workdir = ctx.workdir / "kafka_e2e"
    workdir.mkdir()
    for rnd in range(repeats):
        k = rnd % len(CONSUMERS)
        order = CONSUMERS[k:] + CONSUMERS[:k]
        for payload in payloads:
            for consumer in order:
                res = _run_consumer(consumer, payload, bootstrap, workdir, f"r{rnd}")
                runs.append(res)
                log(
                    f"kafka_e2e: round {rnd + 1}/{repeats} {payload.name:8s} {consumer:8s} "
                    f"{res.events_per_s:>10,.0f} events/s over {res.consume_s:.2f} s "
                    f"(start-up {res.startup_s:.1f} s, stop {res.stop_s:.1f} s)"
                )

    profiles: dict[str, Any] = {}
    notes: list[str] = []
    for payload in payloads:
        log(f"kafka_e2e: one more worker run under cProfile ({payload.name})")
        prefix = workdir / f"profile-{payload.name}"
        prof_run = _run_consumer("worker", payload, bootstrap, workdir, "prof", prefix)
        units = float(payload.events)
        unit = "event" if payload.per_message > 1 else "msg"
        entry: dict[str, Any] = {"run_under_profiler": prof_run.to_json()}
        main_prof = Path(f"{prefix}.main.prof")
        breakdown = _pstats_breakdown(main_prof, units, unit)
        entry["main_breakdown"] = breakdown
        notes.append(
            f"kafka_e2e: worker, {payload.title}, main thread by cumulative time, cProfile "
            f"({prof_run.events_per_s:,.0f} events/s under the profiler; % of the thread's "
            f"profiled time {breakdown['total_s']:.2f} s, first to last message):"
        )
        notes += [
            f"  {b['cumulative_pct']:5.1f}%  {b[f'cumulative_us_per_{unit}']:7.2f} us/{unit}  "
            f"{b['part']}"
            for b in breakdown["parts"]
            if b["cumulative_s"] > 0
        ]
        for thread, n in (("main", PRINT_TOP), ("consumer", PRINT_TOP_CONSUMER)):
            top = _pstats_top(Path(f"{prefix}.{thread}.prof"), units, unit, TOP)
            entry[thread] = top
            notes += profile_lines(
                f"kafka_e2e: worker, {payload.title}, {thread} thread: top {n} by self time, "
                f"cProfile (% of the thread's profiled time {top['total_self_s']:.2f} s; "
                "epoll.poll is idle waiting)",
                top,
                unit,
                n,
            )
        profiles[payload.name] = entry

    rows: list[Row] = []
    for payload in payloads:
        rates = {c: _rate(runs, c, payload.name) for c in CONSUMERS}
        w, f, a, d = rates["worker"], rates["faust"], rates["aiokafka"], rates["adapter"]
        is_env = payload.per_message > 1
        p = payload.title
        rows.append(
            Row(
                f"{p}: {LABELS['worker']}",
                w.median,
                w.best,
                "events/s",
                f">= {TARGET_ENVELOPE_EVENTS_PER_S:,.0f}" if is_env else "",
                w.median >= TARGET_ENVELOPE_EVENTS_PER_S if is_env else None,
            )
        )
        rows.append(Row(f"{p}: {LABELS['faust']}", f.median, f.best, "events/s"))
        rows.append(Row(f"{p}: {LABELS['aiokafka']}", a.median, a.best, "events/s"))
        rows.append(Row(f"{p}: {LABELS['adapter']} (no Kafka)", d.median, d.best, "events/s"))
        rows.append(
            ratio_row(
                f"{p}: driftwatch run / bare Faust",
                w,
                f,
                None if is_env else TARGET_SINGLE_VS_FAUST,
            )
        )
        rows.append(ratio_row(f"{p}: driftwatch run / aiokafka", w, a))
        rows.append(ratio_row(f"{p}: bare Faust / aiokafka", f, a))
        rows.append(ratio_row(f"{p}: driftwatch run / in-process adapter", w, d))
        per = "message" if not is_env else "event"
        rows.append(Row(f"{p}: driftwatch run, per {per}", 1e6 / w.median, 1e6 / w.best, "us"))
    for payload in payloads:
        rows.append(
            _time_row(
                f"start-up to 1st message, {LABELS['worker']}, {payload.name}",
                _seconds(runs, "worker", payload.name, None),
            )
        )
    rows.append(
        _time_row(
            "  of which Faust start + group join/rebalance, driftwatch run",
            _seconds(runs, "worker", "single", "start_and_rebalance")
            + _seconds(runs, "worker", "envelope", "start_and_rebalance"),
        )
    )
    rows.append(
        _time_row(
            f"start-up to 1st message, {LABELS['faust']}",
            _seconds(runs, "faust", "single", None) + _seconds(runs, "faust", "envelope", None),
        )
    )
    rows.append(
        _time_row(
            f"start-up to 1st message, {LABELS['aiokafka']}",
            _seconds(runs, "aiokafka", "single", None)
            + _seconds(runs, "aiokafka", "envelope", None),
        )
    )

    notes = (
        _budget_notes(runs, payloads) + _startup_notes(runs, payloads) + _cpu_notes(runs, payloads)
    ) + notes
    details: dict[str, Any] = {
        "bootstrap": bootstrap,
        "broker_start_s": broker_start_s,
        "partitions": PARTITIONS,
        "payloads": {
            p.name: {
                "topic": p.topic,
                "messages": p.messages,
                "events": p.events,
                "events_per_message": p.per_message,
                "bytes": p.nbytes,
                "bytes_per_event": p.nbytes / p.events,
                "produce_s": p.produce_s,
            }
            for p in payloads
        },
        "repeats": repeats,
        "targets": {
            "single_event_worker_over_bare_faust": TARGET_SINGLE_VS_FAUST,
            "envelope_events_per_s": TARGET_ENVELOPE_EVENTS_PER_S,
        },
        "runs": [r.to_json() for r in runs],
        "profile": profiles,
    }
    return BenchResult("kafka_e2e", rows, details, notes)


def _budget_notes(runs: list[RunResult], payloads: list[Payload]) -> list[str]:
    """Per-message costs and what the targets leave for driftwatch's own work."""
    out = ["kafka_e2e: per message / per event, median of rounds (us):"]
    for payload in payloads:
        per = {c: 1e6 / _rate(runs, c, payload.name).median for c in CONSUMERS}
        unit = "event" if payload.per_message > 1 else "msg"
        out.append(
            f"  {payload.name:8s} driftwatch run {per['worker']:.1f} us/{unit} = bare Faust "
            f"{per['faust']:.1f} + {per['worker'] - per['faust']:.1f} more; in-process adapter "
            f"{per['adapter']:.1f}; aiokafka+orjson {per['aiokafka']:.1f}"
        )
        if payload.per_message == 1:
            budget = per["faust"] * (1 / TARGET_SINGLE_VS_FAUST - 1)
            out.append(
                f"  {'':8s} {TARGET_SINGLE_VS_FAUST:g}x bare Faust leaves {budget:.1f} us/msg for "
                f"everything driftwatch adds (now {per['worker'] - per['faust']:.1f})"
            )
        else:
            budget = 1e6 / TARGET_ENVELOPE_EVENTS_PER_S
            out.append(
                f"  {'':8s} {TARGET_ENVELOPE_EVENTS_PER_S:,.0f} events/s leaves {budget:.1f} "
                f"us/event in all (now {per['worker']:.1f}; in-process adapter alone "
                f"{per['adapter']:.1f})"
            )
    return out


def _startup_notes(runs: list[RunResult], payloads: list[Payload]) -> list[str]:
    import statistics

    out = [
        "kafka_e2e: start-up phases, median s (spawn -> interpreter -> imports and setup incl. "
        "ensure_topics -> Faust start + group join/rebalance -> recovery + 1st fetch + 1st msg):"
    ]
    for consumer in SUBPROCESSES:
        for payload in payloads:
            sel = [r for r in runs if r.consumer == consumer and r.payload == payload.name]
            keys = list(sel[0].phases)
            parts = ", ".join(
                f"{k} {statistics.median(r.phases.get(k, float('nan')) for r in sel):.2f}"
                for k in keys
            )
            stop = statistics.median(r.stop_s for r in sel)
            out.append(f"  {LABELS[consumer]:24s} {payload.name:8s} {parts}; stop {stop:.2f}")
    return out


def _cpu_notes(runs: list[RunResult], payloads: list[Payload]) -> list[str]:
    import statistics

    out = [
        "kafka_e2e: consumer CPU while consuming, median (process CPU s / wall s; main thread "
        "share of it; 2 cores shared with the broker):"
    ]
    for consumer in CONSUMERS:
        for payload in payloads:
            sel = [r for r in runs if r.consumer == consumer and r.payload == payload.name]
            util = statistics.median(r.cpu_s / r.consume_s for r in sel)
            main = statistics.median(r.main_thread_cpu_s / max(r.cpu_s, 1e-9) for r in sel)
            out.append(
                f"  {LABELS[consumer]:24s} {payload.name:8s} {util:.2f} CPU, "
                f"main thread {100 * main:.0f}%"
            )
    return out
