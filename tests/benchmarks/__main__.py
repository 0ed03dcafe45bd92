"""``python -m tests.benchmarks [--quick] [--only NAME] [--out PATH]``: run, print, write JSON."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.benchmarks import (
    cardinality,
    detector_core,
    instructions,
    kafka_e2e,
    memory,
    replay_e2e,
)
from tests.benchmarks.harness import BenchResult, Context, log, system_info, table, write_json

BENCHMARKS: dict[str, Callable[[Context], BenchResult]] = {
    "detector_core": detector_core.run,
    "replay_e2e": replay_e2e.run,
    "memory": memory.run,
    "cardinality": cardinality.run,
    "kafka_e2e": kafka_e2e.run,
    "instructions": instructions.run,
}

NOISE_NOTE = (
    "Shared, noisy machine (other jobs, e.g. test runs, may be running): absolute numbers vary "
    "between runs; ratios against baselines measured in the same run, in interleaved rounds, "
    "are the figures to compare. Targets are judged on the median and never fail the run."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
    p.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results/bench.json"),
        help="JSON results file (default: %(default)s)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: smaller inputs (replay 20k events, memory 100k vs 500k), fewer rounds",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="override every benchmark's number of rounds"
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="directory for the temporary input files (default: a new temp dir)",
    )
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; always exits 0 unless a benchmark itself breaks."""
    args = parse_args(argv)
    names = [n for n in BENCHMARKS if args.only is None or n in args.only]
    doc: dict[str, Any] = system_info()
    doc["mode"] = "quick" if args.quick else "full"
    doc["command"] = " ".join([os.path.basename(sys.executable), "-m", "tests.benchmarks"])
    doc["argv"] = sys.argv[1:] if argv is None else argv
    doc["noise_note"] = NOISE_NOTE
    doc["benchmarks"] = {}
    results: list[BenchResult] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="driftwatch-bench-", dir=args.workdir) as tmp:
        ctx = Context(quick=args.quick, workdir=Path(tmp), repeats=args.repeats)
        for name in names:
            t0 = time.perf_counter()
            res = BENCHMARKS[name](ctx)
            entry = res.to_json()
            entry["wall_s"] = time.perf_counter() - t0
            doc["benchmarks"][name] = entry
            results.append(res)
            log(f"{name} done in {entry['wall_s']:.0f} s")
            write_json(args.out, doc)  # partial results survive a later failure
    doc["load_average_end"] = list(os.getloadavg())
    doc["total_wall_s"] = time.perf_counter() - started
    write_json(args.out, doc)

    print()
    print(
        f"driftwatch benchmarks ({doc['mode']}) {doc['date']}  python {doc['python']}  "
        f"numpy {doc['numpy']}  {doc['cpu_model']} x{doc['cpu_count']}  "
        f"load {doc['load_average_start'][0]:.2f}->{doc['load_average_end'][0]:.2f}"
    )
    print(
        "median/best over repeated rounds (best = fastest round / lowest RSS); ratios: median of "
        "per-round ratios; targets judged on the median"
    )
    print()
    print(table(results))
    for res in results:
        if res.notes:
            print()
            print("\n".join(res.notes))
    print()
    print(f"note: {NOISE_NOTE}")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
