"""Instructions per event of the worker's agent code, counted by valgrind: exact where wall-clock
rounds on this shared machine are not.

The worker's agent code (``KafkaAdapter.add``/``flush`` wired as ``monitor.app.build_app`` wires
it, the in-process adapter of :mod:`tests.benchmarks.kafka_e2e`, under the worker's garbage
collector settings) runs over envelopes of 500 steady 25-feature events in a child interpreter
under ``valgrind --tool=cachegrind --cache-sim=no`` with ``PYTHONHASHSEED=0``, twice: over
:data:`SHORT` and over :data:`LONG` envelopes. The difference of the two instruction counts over
the difference in events is the cost of one event in steady state: start-up, imports, the
5,000-event warm-up and the reference build fall out. The baseline, counted the same way in the
same run: ``orjson.loads`` of every envelope (what any consumer of JSON pays).

The count repeats to about 1 % between runs (wall-clock rounds of the same code here differed by
0.7-1.4x), so a change of a few per cent in the agent code shows here when it cannot in
:mod:`tests.benchmarks.kafka_e2e`. It counts instructions, not time: cache misses, the GIL and
the broker are not in it. Without valgrind on ``PATH`` the benchmark reports that and nothing
else. Takes about two minutes (``--quick``: about one).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from tests.benchmarks.harness import BenchResult, Context, Row, log

SHORT = 20
LONG = 120
QUICK_LONG = 60
ENVELOPE_SIZE = 500
SEED = 0

_CHILD = (
    "import sys; from tests.benchmarks.instructions import child_main; child_main(sys.argv[1:])"
)


def _write_values(path: Path, messages: int) -> None:
    from monitor.simulate import generate
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


def child_main(argv: list[str]) -> None:
    """Child entry: ``MODE VALUES_FILE MESSAGES`` with MODE ``adapter`` or ``orjson``."""
    mode, path, count = argv
    values = _read_values(Path(path), int(count))
    if mode == "orjson":
        import orjson

        events = sum(len(orjson.loads(v)["events"]) for v in values)
        assert events == len(values) * ENVELOPE_SIZE
        return
    from monitor.gctune import fewer_collections
    from tests.benchmarks.kafka_e2e import Payload, _run_adapter

    payload = Payload(
        "envelope",
        "envelopes",
        "bench",
        "",
        "",
        len(values),
        len(values) * ENVELOPE_SIZE,
        sum(map(len, values)),
        0.0,
        values,
    )
    with fewer_collections():  # as monitor.app.run_worker runs the agent
        _run_adapter(payload)


def _count(valgrind: str, mode: str, values: Path, messages: int) -> int:
    """Instructions of one child run (the whole process)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [
            valgrind,
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
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
    found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        tail = proc.stderr[-2000:]
        raise RuntimeError(f"valgrind {mode} {messages}: exit {proc.returncode}\n{tail}")
    return int(found.group(1).replace(",", ""))


def run(ctx: Context) -> BenchResult:
    """Count, print, return rows (one round: the count does not vary enough to need more)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        note = "instructions: valgrind is not installed (apt-get install valgrind); not counted"
        log(note)
        return BenchResult("instructions", [], {"skipped": "valgrind not installed"}, [note])
    long = QUICK_LONG if ctx.quick else LONG
    values = ctx.workdir / "instructions-envelopes.bin"
    _write_values(values, long)
    events = (long - SHORT) * ENVELOPE_SIZE
    per_event: dict[str, float] = {}
    for mode in ("adapter", "orjson"):
        log(f"instructions: {mode} over {SHORT} and {long} envelopes of {ENVELOPE_SIZE}, valgrind")
        short_ir = _count(valgrind, mode, values, SHORT)
        long_ir = _count(valgrind, mode, values, long)
        per_event[mode] = (long_ir - short_ir) / events
    adapter, baseline = per_event["adapter"], per_event["orjson"]
    rows = [
        Row("agent code (in-process adapter), per event", adapter, adapter, "instr."),
        Row("orjson.loads of the envelopes, per event (baseline)", baseline, baseline, "instr."),
        Row("agent code / orjson.loads", adapter / baseline, adapter / baseline, "x"),
    ]
    details = {"per_event": per_event, "short": SHORT, "long": long, "envelope": ENVELOPE_SIZE}
    return BenchResult("instructions", rows, details)
