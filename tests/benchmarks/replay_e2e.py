"""``driftwatch replay`` end to end, next to a bare JSON parse of the same file.

A JSONL file of steady 25-feature prediction events is written with
:mod:`monitor.scenarios.simulate` (200,000 events; 20,000 with ``--quick``). Timed, in
interleaved rounds:

* ``monitor.replay.replay(path, Pipeline(), sink=None, progress=False)`` (a fresh pipeline each
  time, so the 5,000-event warm-up and the reference build are included, as in a real replay);
* ``json.loads`` of every line, read the same way (``monitor.references.iter_lines``: binary
  ``readlines`` chunks) -- the baseline of the "within 3x" target;
* ``orjson.loads`` of every line;
* for the breakdown: reading the lines only, and ``monitor.events.parse_event`` (validation) of
  every line.

Then one replay runs under cProfile (top functions by self time, C functions such as pydantic's
``validate_json`` named separately; its per-call overhead inflates small Python functions) and
one under pyinstrument (sampled wall time, lower overhead), as a cross-check of each other.

Targets: at least 100,000 events/s on one core; replay time at most 3x the ``json.loads`` pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from pyinstrument import Profiler
from pyinstrument.frame import Frame

from monitor.events import parse_event
from monitor.pipeline import Pipeline
from monitor.references import iter_lines
from monitor.replay import replay
from monitor.scenarios.simulate import generate
from tests.benchmarks.harness import (
    BenchResult,
    Context,
    Row,
    cprofile_top,
    interleaved,
    log,
    profile_lines,
    ratio_row,
    short_path,
)

TARGET_EVENTS_PER_S = 100_000.0
TARGET_JSON_RATIO = 3.0
SEED = 0
TOP = 10
PRINT_TOP = 5


def _walk(frame: Frame, acc: dict[str, float]) -> None:
    if not frame.is_synthetic:
        key = f"{frame.function} ({short_path(frame.file_path or '?')}:{frame.line_no})"
        acc[key] = acc.get(key, 0.0) + frame.total_self_time
    for child in frame.children:
        _walk(child, acc)


def pyinstrument_top(path: Path, events: int) -> dict[str, Any]:
    """Replay once under pyinstrument; the top functions by sampled self time."""
    profiler = Profiler(interval=0.001)
    profiler.start()
    result = replay(path, Pipeline(), sink=None, progress=False)
    session = profiler.stop()
    assert result.stats.lines == events
    root = session.root_frame()
    acc: dict[str, float] = {}
    if root is not None:
        _walk(root, acc)
    total = session.duration
    ranked = sorted(acc.items(), key=lambda kv: kv[1], reverse=True)[:TOP]
    return {
        "tool": "pyinstrument (statistical sampling every 1 ms)",
        "wall_s": total,
        "top_self": [
            {
                "function": name,
                "self_s": s,
                "self_pct": 100.0 * s / total if total > 0 else 0.0,
                "self_us_per_event": 1e6 * s / events,
            }
            for name, s in ranked
        ],
    }


def run(ctx: Context) -> BenchResult:
    """Run the benchmark (see the module docstring)."""
    events = 20_000 if ctx.quick else 200_000
    path = ctx.workdir / f"replay-steady-{events}.jsonl"
    log(f"replay_e2e: writing {events:,} steady events")
    generate("steady", events, SEED).write(path)
    size = path.stat().st_size
    try:
        return _measure(ctx, path, events, size)
    finally:
        path.unlink(missing_ok=True)


def _measure(ctx: Context, path: Path, events: int, size: int) -> BenchResult:
    max_bytes = Pipeline().settings.events.max_bytes

    def do_replay() -> object:
        result = replay(path, Pipeline(), sink=None, progress=False)
        if result.stats.accepted != events:
            raise RuntimeError(f"replay accepted {result.stats.accepted} of {events} events")
        return result

    def do_json() -> object:
        loads = json.loads
        for lines in iter_lines(path):
            for raw in lines:
                loads(raw)
        return None

    def do_orjson() -> object:
        loads = orjson.loads
        for lines in iter_lines(path):
            for raw in lines:
                loads(raw)
        return None

    def do_read() -> object:
        n = 0
        for lines in iter_lines(path):
            n += len(lines)
        return n

    def do_parse_event() -> object:
        parse = parse_event
        for lines in iter_lines(path):
            for i, raw in enumerate(lines):
                parse(raw, i, max_bytes)
        return None

    repeats = ctx.reps(full=5, quick=3)
    log(f"replay_e2e: timing, {repeats} interleaved rounds")
    t = interleaved(
        {
            "replay": do_replay,
            "json_loads": do_json,
            "orjson_loads": do_orjson,
            "read_lines": do_read,
            "parse_event": do_parse_event,
        },
        repeats=repeats,
        min_seconds=0.0,
    )
    work = float(events)
    r_replay = t["replay"].rate(work)
    r_json = t["json_loads"].rate(work)
    r_orjson = t["orjson_loads"].rate(work)
    r_read = t["read_lines"].rate(work)
    r_parse = t["parse_event"].rate(work)
    unit = "events/s"
    rows = [
        Row(
            "replay (driftwatch replay)",
            r_replay.median,
            r_replay.best,
            unit,
            f">= {TARGET_EVENTS_PER_S:,.0f}",
            r_replay.median >= TARGET_EVENTS_PER_S,
        ),
        Row("json.loads every line (baseline)", r_json.median, r_json.best, unit),
        Row("orjson.loads every line", r_orjson.median, r_orjson.best, unit),
        Row("read lines only", r_read.median, r_read.best, unit),
        Row("parse_event (validation) only", r_parse.median, r_parse.best, unit),
        # Time ratios: replay time / baseline time = baseline rate / replay rate.
        ratio_row(
            "replay time / json.loads time", r_json, r_replay, TARGET_JSON_RATIO, at_most=True
        ),
        ratio_row("replay time / orjson.loads time", r_orjson, r_replay),
        ratio_row("parse_event time / replay time", r_replay, r_parse),
        Row("replay, per event", 1e6 / r_replay.median, 1e6 / r_replay.best, "us"),
    ]

    log("replay_e2e: one replay under cProfile")
    cprof = cprofile_top(do_replay, work, "event", TOP)
    log("replay_e2e: one replay under pyinstrument")
    pyinst = pyinstrument_top(path, events)
    notes = profile_lines(
        f"replay_e2e: top {PRINT_TOP} by self time, cProfile ({events:,} events):",
        cprof,
        "event",
        PRINT_TOP,
    )
    notes += profile_lines(
        f"replay_e2e: top {PRINT_TOP} by self time, pyinstrument:", pyinst, "event", PRINT_TOP
    )
    details: dict[str, Any] = {
        "events": events,
        "file_bytes": size,
        "bytes_per_event": size / events,
        "repeats": repeats,
        "targets": {
            "events_per_s": TARGET_EVENTS_PER_S,
            "replay_over_json_loads_time": TARGET_JSON_RATIO,
        },
        "timings": {name: tm.to_json() for name, tm in t.items()},
        "profile": cprof,
        "profile_pyinstrument": pyinst,
    }
    return BenchResult("replay_e2e", rows, details, notes)
