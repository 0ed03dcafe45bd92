"""Instructions per event of the worker's agent code, counted by valgrind: exact where wall-clock
rounds on this shared machine are not.

The worker's agent code (``KafkaAdapter.add``/``flush`` wired as ``monitor.app.build_app`` wires
it: :func:`tests.benchmarks.kafka_e2e.bench_adapter`, under the worker's garbage collector
settings) runs over envelopes of 500 steady 25-feature events in a child interpreter under
``valgrind --tool=callgrind`` with ``PYTHONHASHSEED=0``. The first :data:`WARM` envelopes (the
5,000-event warm-up, the reference build, the first windows) run uncounted; the rest run inside
a ctypes callback, and callgrind counts only while one is active (``--collect-atstart=no
--toggle-collect=closure_fcn``, CPython's entry into a ctypes callback, which nothing else in
the run uses). Start-up, imports and the warm-up are therefore not in the count, which is the
cost of one event in steady state. The baseline, counted the same way in the same run:
``orjson.loads`` of the same envelopes (what any consumer of JSON pays).

The count repeats to within 0.01 % between runs and scales with the events counted (54.2 k per
event over 50 and over 100 envelopes), against wall-clock rounds of the same code that differed
by 0.7-1.4x here; so a change of a per cent in the agent code shows here when it cannot in
:mod:`tests.benchmarks.kafka_e2e`. It counts instructions, not time: cache misses, the GIL and
the broker are not in it. (An earlier version took the difference of two whole-process counts;
the start-up in them varied by 2 %, which moved the per-event figure by up to 5 %.) Without
valgrind on ``PATH`` the benchmark reports that and nothing else. Takes about two minutes.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.benchmarks.harness import BenchResult, Context, Row, log

WARM = 20
COUNTED = 100
QUICK_COUNTED = 40
ENVELOPE_SIZE = 500
SEED = 0

_CHILD = (
    "import sys; from tests.benchmarks.instructions import child_main; child_main(sys.argv[1:])"
)


def _write_values(path: Path, messages: int) -> None:
    from monitor.scenarios.simulate import generate
    from tests.benchmarks.kafka_e2e import _lines_in_messages

    events = generate("steady", messages * ENVELOPE_SIZE, SEED).lines()
    lines = (line.rstrip(b"\n") for line in events)
    with path.open("wb") as f:
        for _, value in _lines_in_messages(lines, ENVELOPE_SIZE):
            f.write(struct.pack("<I", len(value)))
            f.write(value)


def _read_values(path: Path, messages: int) -> list[bytes]:
    values: list[bytes] = []
    with path.open("rb") as f:
        while len(values) < messages:
            (n,) = struct.unpack("<I", f.read(4))
            values.append(f.read(n))
    return values


def _counted(fn: Callable[[], object]) -> None:
    """Run ``fn`` inside a ctypes callback: the stretch callgrind counts (see the module)."""
    import ctypes

    def body() -> None:
        fn()

    ctypes.CFUNCTYPE(None)(body)()


def child_main(argv: list[str]) -> None:
    """Child entry: ``MODE VALUES_FILE MESSAGES`` with MODE ``adapter`` or ``orjson``; the
    messages after the first :data:`WARM` are counted."""
    mode, path, count = argv
    values = _read_values(Path(path), int(count))
    warm, counted = values[:WARM], values[WARM:]
    if mode == "orjson":
        import orjson

        loads = orjson.loads
        for v in warm:
            loads(v)
        _counted(lambda: [loads(v) for v in counted])
        return
    import asyncio

    from monitor.gctune import fewer_collections
    from tests.benchmarks.kafka_e2e import _Msg, bench_adapter

    adapter, pipeline, obs = bench_adapter()

    def ack() -> None:
        pass

    async def feed(first: int, batch: list[bytes]) -> None:
        add = adapter.add
        for offset, value in enumerate(batch, first):
            if add(_Msg("bench", 0, offset, b"fraud"), value, ack):
                await adapter.flush()
        await adapter.flush()

    with fewer_collections():  # as monitor.app.run_worker runs the agent
        asyncio.run(feed(0, warm))
        _counted(lambda: asyncio.run(feed(WARM, counted)))
    obs.close()
    if pipeline.stats.accepted != len(values) * ENVELOPE_SIZE:
        raise RuntimeError(f"accepted {pipeline.stats.accepted} of {len(values) * ENVELOPE_SIZE}")


def _count(valgrind: str, mode: str, values: Path, messages: int) -> int:
    """Instructions callgrind counted in one child run (see the module)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [
            valgrind,
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=closure_fcn",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            _CHILD,
            mode,
            str(values),
            str(messages),
        ],
        cwd=root,
        env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    found = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
    if proc.returncode != 0 or found is None or int(found.group(1)) == 0:
        tail = proc.stderr[-2000:]
        raise RuntimeError(f"valgrind {mode} {messages}: exit {proc.returncode}\n{tail}")
    return int(found.group(1))


def run(ctx: Context) -> BenchResult:
    """Count, print, return rows (one round: the count does not vary enough to need more)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        note = "instructions: valgrind is not installed (apt-get install valgrind); not counted"
        log(note)
        return BenchResult("instructions", [], {"skipped": "valgrind not installed"}, [note])
    counted = QUICK_COUNTED if ctx.quick else COUNTED
    values = ctx.workdir / "instructions-envelopes.bin"
    _write_values(values, WARM + counted)
    events = counted * ENVELOPE_SIZE
    per_event: dict[str, float] = {}
    for mode in ("adapter", "orjson"):
        log(
            f"instructions: {mode} over {counted} envelopes of {ENVELOPE_SIZE} after {WARM}, "
            "callgrind"
        )
        per_event[mode] = _count(valgrind, mode, values, WARM + counted) / events
    adapter, baseline = per_event["adapter"], per_event["orjson"]
    rows = [
        Row("agent code (in-process adapter), per event", adapter, adapter, "instr."),
        Row("orjson.loads of the envelopes, per event (baseline)", baseline, baseline, "instr."),
        Row("agent code / orjson.loads", adapter / baseline, adapter / baseline, "x"),
    ]
    details = {
        "per_event": per_event,
        "warm": WARM,
        "counted": counted,
        "envelope": ENVELOPE_SIZE,
    }
    return BenchResult("instructions", rows, details)
