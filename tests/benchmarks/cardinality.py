"""Replay of many distinct model versions against the steady stream: lines/s and peak RSS.

One steady stream (:mod:`monitor.scenarios.simulate`, 200,000 events; 80,000 with ``--quick``)
is written once; the same lines with ``model_version`` rewritten to ``v{i % V}`` make the inputs of
``V`` = 10,000 and 40,000 distinct versions (each line a different version from the one
before: the worst case for finding a stream). Each input is replayed with the real
:func:`monitor.replay.replay` and the default settings (``limits.max_streams`` 1,000,
``limits.max_warmup_events`` 100,000) in a fresh interpreter, as in :mod:`tests.benchmarks.memory`,
in interleaved rounds: steady, 10k, 40k, steady, ... Ratios are per round against the steady
replay of the same round.

A further input replays 40,000 versions with the limits raised to hold them all
(``max_streams`` 50,000): what the limits save, and that finding a stream no longer scans the
others (before issue 14, 40,000 versions replayed at 536 lines/s).

Targets (issue 14): lines/s at least 0.5x the steady stream's, peak RSS at most 2x.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.harness import REPO_ROOT, BenchResult, Context, Row, log

SEED = 0
MIN_RATE_RATIO = 0.5
MAX_RSS_RATIO = 2.0
_CHILD = "import sys; from tests.benchmarks.cardinality import child_main; child_main(sys.argv[1:])"
RAISED = {"limits": {"max_streams": 50_000, "max_warmup_events": 50_000 * 5000}}


def child_main(argv: list[str]) -> None:
    """Subprocess entry: replay ``argv[0]`` with settings ``argv[1]`` (JSON); print JSON."""
    import resource

    from monitor.config import settings_from_mapping
    from monitor.pipeline import Pipeline
    from monitor.replay import replay

    settings = settings_from_mapping(json.loads(argv[1]), "benchmark")
    pipeline = Pipeline(settings)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = replay(argv[0], pipeline, sink=None, progress=False)
    s = result.stats
    out = {
        "lines": s.lines,
        "accepted": s.accepted,
        "rejected": dict(s.rejected),
        "evicted": s.evicted,
        "streams": len(pipeline.streams),
        "seconds": result.seconds,
        "rss_before_replay_kib": before,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    print(json.dumps(out), flush=True)


def measure(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Replay ``path`` in a fresh interpreter (through a shell: see tests.benchmarks.memory)."""
    proc = subprocess.run(
        [
            "/bin/sh",
            "-c",
            '"$0" -c "$1" "$2" "$3"; exit $?',
            sys.executable,
            _CHILD,
            str(path),
            json.dumps(settings),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"replay subprocess failed ({proc.returncode}):\n{proc.stderr}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def distinct(src: Path, dst: Path, versions: int) -> None:
    """``src`` with the model version of line ``i`` set to ``v{i % versions}``."""
    needle = b'"model_version":"v1"'
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for i, line in enumerate(fin):
            fout.write(line.replace(needle, b'"model_version":"v%d"' % (i % versions), 1))


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def run(ctx: Context) -> BenchResult:
    """Run the benchmark (see the module docstring)."""
    from monitor.scenarios.simulate import generate

    n = 80_000 if ctx.quick else 200_000
    steady = ctx.workdir / f"cardinality-steady-{n}.jsonl"
    inputs: dict[str, tuple[Path, dict[str, Any]]] = {"steady": (steady, {})}
    try:
        log(f"cardinality: writing {n:,} steady events and their distinct-version copies")
        generate("steady", n, SEED).write(steady)
        for v in (10_000, 40_000):
            path = ctx.workdir / f"cardinality-{v}-{n}.jsonl"
            distinct(steady, path, v)
            inputs[f"{v // 1000}k"] = (path, {})
        inputs["40k, limits raised"] = (inputs["40k"][0], RAISED)
        repeats = ctx.reps(full=3, quick=1)
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in inputs}
        for i in range(repeats):
            for key, (path, settings) in inputs.items():
                log(f"cardinality: round {i + 1}/{repeats}, replaying {key}")
                res = measure(path, settings)
                if res["lines"] != n:
                    raise RuntimeError(f"replay of {path.name} read {res['lines']} lines")
                runs[key].append(res)
    finally:
        for path, _ in inputs.values():
            path.unlink(missing_ok=True)

    def rate(r: dict[str, Any]) -> float:
        return float(r["lines"]) / float(r["seconds"])

    def rss(r: dict[str, Any]) -> float:
        return float(r["peak_rss_kib"]) / 1024.0

    rows: list[Row] = []
    for key, rs in runs.items():
        rates, peaks = [rate(r) for r in rs], [rss(r) for r in rs]
        rows.append(Row(f"replay rate, {key}", _median(rates), max(rates), "lines/s"))
        rows.append(Row(f"peak RSS, {key}", _median(peaks), min(peaks), "MiB"))
        if key == "steady":
            continue
        rate_ratio = [rate(r) / rate(b) for r, b in zip(rs, runs["steady"], strict=True)]
        rss_ratio = [rss(r) / rss(b) for r, b in zip(rs, runs["steady"], strict=True)]
        judged = "raised" not in key
        rows.append(
            Row(
                f"lines/s ratio, {key} / steady",
                _median(rate_ratio),
                max(rate_ratio),
                "x",
                f">= {MIN_RATE_RATIO}x" if judged else "",
                _median(rate_ratio) >= MIN_RATE_RATIO if judged else None,
            )
        )
        rows.append(
            Row(
                f"peak RSS ratio, {key} / steady",
                _median(rss_ratio),
                min(rss_ratio),
                "x",
                f"<= {MAX_RSS_RATIO}x" if judged else "",
                _median(rss_ratio) <= MAX_RSS_RATIO if judged else None,
            )
        )
    last = {k: rs[-1] for k, rs in runs.items()}
    notes = [
        f"cardinality: {k}: accepted {r['accepted']:,}, rejected {r['rejected']}, "
        f"streams kept {r['streams']:,}, evicted {r['evicted']:,}"
        for k, r in last.items()
    ]
    details: dict[str, Any] = {
        "events": n,
        "repeats": repeats,
        "targets": f"lines/s >= {MIN_RATE_RATIO}x steady, peak RSS <= {MAX_RSS_RATIO}x steady",
        "raised_settings": RAISED,
        "runs": runs,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return BenchResult("cardinality", rows, details, notes)
