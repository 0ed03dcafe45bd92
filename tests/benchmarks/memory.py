"""Peak memory of a replay does not grow with the length of the stream.

The larger input (5,000,000 steady events, ~4 GB; 500,000 with ``--quick``) is written once with
:mod:`monitor.scenarios.simulate`; the smaller one (1,000,000; 100,000 with ``--quick``) is its
first lines, copied, so both are replayed with the real :func:`monitor.replay.replay`. Each
replay runs in a fresh interpreter (``python -c`` calling :func:`child_main`), which prints its
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end as JSON on stdout. Replays alternate
small, large, small, large, ... and the peak RSS of each size is reported as median and min.

The interpreter is started through ``/bin/sh`` rather than directly: on Linux, ``ru_maxrss`` of a
process spawned straight from the benchmark process starts at the *parent's* peak RSS (it is
carried through ``exec``), which would hide the replay's own peak behind the parent's. The
child also reports ``VmHWM`` from ``/proc/self/status`` as a cross-check.

Target: the two peaks differ by less than 10%.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time
from itertools import islice
from pathlib import Path
from typing import Any

from tests.benchmarks.harness import REPO_ROOT, BenchResult, Context, Row, log

TARGET_DIFF_PCT = 10.0
SEED = 0
TRACE_POINTS = 60
_CHILD = "import sys; from tests.benchmarks.memory import child_main; child_main(sys.argv[1:])"


def _vm_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def child_main(argv: list[str]) -> None:
    """Subprocess entry: replay ``argv[0]``, print counts and peak RSS (KiB) as JSON."""
    from monitor.pipeline import Pipeline
    from monitor.replay import replay

    path = argv[0]
    pipeline = Pipeline()
    trace: list[tuple[int, int | None]] = []
    done = threading.Event()

    def sample_rss() -> None:
        # (lines processed so far, current RSS) twice a second: shows whether memory plateaus.
        while not done.wait(0.5):
            trace.append((pipeline.stats.lines, _vm_kib("VmRSS")))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sampler.start()
    result = replay(path, pipeline, sink=None, progress=False)
    done.set()
    sampler.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step = max(1, len(trace) // TRACE_POINTS)
    out = {
        "lines": result.stats.lines,
        "accepted": result.stats.accepted,
        "windows": result.stats.windows,
        "seconds": result.seconds,
        "rss_before_replay_kib": before,
        "peak_rss_kib": peak,
        "vm_hwm_kib": _vm_kib("VmHWM"),
        "rss_end_kib": _vm_kib("VmRSS"),
        "label_joiner_pending": len(pipeline.joiner),
        "rss_trace_lines_kib": trace[::step],
    }
    print(json.dumps(out), flush=True)


def measure(path: Path) -> dict[str, Any]:
    """Replay ``path`` in a fresh interpreter; what :func:`child_main` printed."""
    start = time.perf_counter()
    # Through a shell that forks (not execs) the interpreter: on Linux a process started
    # directly from this one inherits, through exec, this process's own peak RSS as its
    # ru_maxrss; a fork of the small shell starts from a fresh count.
    proc = subprocess.run(
        ["/bin/sh", "-c", '"$0" -c "$1" "$2"; exit $?', sys.executable, _CHILD, str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"replay subprocess failed ({proc.returncode}):\n{proc.stderr}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["subprocess_wall_s"] = time.perf_counter() - start
    return out


def copy_head(src: Path, dst: Path, lines: int) -> None:
    """Copy the first ``lines`` lines of ``src`` to ``dst``."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.writelines(islice(fin, lines))


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def run(ctx: Context) -> BenchResult:
    """Run the benchmark (see the module docstring)."""
    small_n, large_n = (100_000, 500_000) if ctx.quick else (1_000_000, 5_000_000)
    large = ctx.workdir / f"memory-steady-{large_n}.jsonl"
    small = ctx.workdir / f"memory-steady-{small_n}.jsonl"
    try:
        log(f"memory: writing {large_n:,} steady events")
        start = time.perf_counter()
        generate_seconds = _generate(large, large_n)
        copy_head(large, small, small_n)
        log(f"memory: inputs ready in {time.perf_counter() - start:.0f} s")
        repeats = ctx.reps(full=2, quick=3)
        runs: dict[str, list[dict[str, Any]]] = {"small": [], "large": []}
        for i in range(repeats):
            for key, path, n in (("small", small, small_n), ("large", large, large_n)):
                log(f"memory: round {i + 1}/{repeats}, replaying {n:,} events in a subprocess")
                res = measure(path)
                if res["lines"] != n or res["accepted"] != n:
                    raise RuntimeError(f"replay of {path.name} read {res['lines']} lines")
                runs[key].append(res)
        sizes = {"small": small.stat().st_size, "large": large.stat().st_size}
    finally:
        large.unlink(missing_ok=True)
        small.unlink(missing_ok=True)

    def peaks(key: str) -> list[float]:
        return [r["peak_rss_kib"] / 1024.0 for r in runs[key]]

    def rates(key: str) -> list[float]:
        return [r["lines"] / r["seconds"] for r in runs[key]]

    ps, pl = peaks("small"), peaks("large")
    med_s, med_l = _median(ps), _median(pl)
    min_s, min_l = min(ps), min(pl)
    diff_med = 100.0 * (med_l - med_s) / med_s
    diff_min = 100.0 * (min_l - min_s) / min_s
    base = [r["rss_before_replay_kib"] / 1024.0 for r in runs["small"] + runs["large"]]
    growth_s = [(r["peak_rss_kib"] - r["rss_before_replay_kib"]) / 1024.0 for r in runs["small"]]
    growth_l = [(r["peak_rss_kib"] - r["rss_before_replay_kib"]) / 1024.0 for r in runs["large"]]
    notes = [
        f"memory: ru_maxrss {r['peak_rss_kib']} KiB disagrees with VmHWM {r['vm_hwm_kib']} KiB"
        for r in runs["small"] + runs["large"]
        if r["vm_hwm_kib"] is not None and r["peak_rss_kib"] > 1.05 * r["vm_hwm_kib"]
    ]
    rs, rl = rates("small"), rates("large")
    rows = [
        Row("interpreter + imports, before replay", _median(base), min(base), "MiB"),
        Row(f"peak RSS, replay of {small_n:,} events", med_s, min_s, "MiB"),
        Row(f"peak RSS, replay of {large_n:,} events", med_l, min_l, "MiB"),
        Row(
            "peak RSS difference, large vs small",
            diff_med,
            diff_min,
            "%",
            f"< {TARGET_DIFF_PCT:g}%",
            abs(diff_med) < TARGET_DIFF_PCT,
        ),
        Row(f"peak minus pre-replay RSS, {small_n:,}", _median(growth_s), min(growth_s), "MiB"),
        Row(f"peak minus pre-replay RSS, {large_n:,}", _median(growth_l), min(growth_l), "MiB"),
        Row(f"replay rate, {small_n:,} events", _median(rs), max(rs), "events/s"),
        Row(f"replay rate, {large_n:,} events", _median(rl), max(rl), "events/s"),
    ]
    details: dict[str, Any] = {
        "small_events": small_n,
        "large_events": large_n,
        "file_bytes": sizes,
        "generate_seconds": generate_seconds,
        "repeats": repeats,
        "target": f"|peak(large) - peak(small)| / peak(small) < {TARGET_DIFF_PCT:g}%",
        "diff_pct_median": diff_med,
        "diff_pct_min": diff_min,
        "runs": runs,
        "note": "peak RSS is ru_maxrss of the replay subprocess (includes interpreter+imports)",
    }
    return BenchResult("memory", rows, details, notes)


def _generate(path: Path, events: int) -> float:
    from monitor.scenarios.simulate import generate

    start = time.perf_counter()
    generate("steady", events, SEED).write(path)
    return time.perf_counter() - start
