"""Shared pieces of the benchmarks: timing, result rows, the table and the system description."""

from __future__ import annotations

import cProfile
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import CodeType
from typing import Any

#: The repository root (``tests/benchmarks/harness.py`` -> ``.``).
REPO_ROOT = Path(__file__).resolve().parents[2]


def log(message: str) -> None:
    """Progress on stderr, so long runs show what they are doing."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Context:
    """What every benchmark gets: run size, a scratch directory, an optional repeat override."""

    quick: bool
    workdir: Path
    repeats: int | None = None

    def reps(self, full: int, quick: int) -> int:
        """Repeats for this run: ``--repeats`` if given, else the benchmark's default."""
        if self.repeats is not None:
            return self.repeats
        return quick if self.quick else full


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table.

    ``median`` and ``best`` summarise the repeated rounds (for a rate: the median and the highest
    rate; for a ratio: the median of the per-round ratios and the ratio of the best rates);
    ``met`` is the target judged on the median, ``None`` when the row has no target.
    """

    metric: str
    median: float
    best: float
    unit: str
    target: str = ""
    met: bool | None = None


@dataclass(slots=True)
class BenchResult:
    """What one benchmark returns: table rows, details for the JSON file, extra printed lines."""

    name: str
    rows: list[Row]
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON form of this result."""
        return {
            "rows": [asdict(r) for r in self.rows],
            "details": self.details,
            "notes": self.notes,
        }


@dataclass(frozen=True, slots=True)
class Timings:
    """Repeated wall times of one measured operation, in seconds per operation."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        """Median seconds per operation."""
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        """Fastest seconds per operation."""
        return min(self.samples)

    def rate(self, work: float) -> Rate:
        """``work`` units per second, round by round."""
        return Rate(tuple(work / s for s in self.samples))

    def to_json(self) -> dict[str, Any]:
        """Samples plus their median and minimum."""
        return {"samples_s": list(self.samples), "median_s": self.median, "min_s": self.best}


@dataclass(frozen=True, slots=True)
class Rate:
    """Work per second in each round of an interleaved measurement (higher is better)."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        """Median rate over the rounds."""
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        """Highest rate (from the fastest round)."""
        return max(self.samples)


def loops_for(fn: Callable[[], object], min_seconds: float) -> int:
    """How many calls of ``fn`` make one sample last at least ``min_seconds`` (one warm-up)."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    if once >= min_seconds:
        return 1
    return max(1, int(min_seconds / max(once, 1e-7)) + 1)


def sample(fn: Callable[[], object], loops: int) -> float:
    """Seconds per call of ``fn`` over ``loops`` calls (after a collection, with gc enabled)."""
    gc.collect()
    start = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - start) / loops


def interleaved(
    cases: Mapping[str, Callable[[], object]], repeats: int, min_seconds: float
) -> dict[str, Timings]:
    """Time every case ``repeats`` times, alternating between cases in each round.

    Alternating spreads background load over all cases alike, which keeps their ratios stable
    on a shared machine even when absolute times move.
    """
    loops = {name: loops_for(fn, min_seconds) for name, fn in cases.items()}
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            samples[name].append(sample(fn, loops[name]))
    return {name: Timings(tuple(s)) for name, s in samples.items()}


def ratio_row(
    metric: str, num: Rate, den: Rate, target: float | None = None, at_most: bool = False
) -> Row:
    """A row ``num / den`` with an optional ``>= target`` check (``<= target`` with ``at_most``).

    The median is the median of the round-by-round ratios (both rates come from the same
    interleaved round, so load that hits both cancels); the best is ``num.best / den.best``.
    """
    med = statistics.median(a / b for a, b in zip(num.samples, den.samples, strict=True))
    best = num.best / den.best
    if target is None:
        return Row(metric, med, best, "x")
    met = med <= target if at_most else med >= target
    return Row(metric, med, best, "x", f"{'<=' if at_most else '>='} {target:g}x", met)


# -- profiles ----------------------------------------------------------------------------------


def short_path(path: str) -> str:
    """A file path relative to the repository or to site-packages."""
    marker = "site-packages/"
    if marker in path:
        return path.split(marker, 1)[1]
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return path


def _code_label(code: CodeType | str) -> str:
    if isinstance(code, str):
        return code
    return f"{code.co_name} ({short_path(code.co_filename)}:{code.co_firstlineno})"


def cprofile_top(fn: Callable[[], object], units: float, unit: str, top: int) -> dict[str, Any]:
    """Run ``fn`` once under cProfile; the ``top`` functions by self (``tottime``) time.

    ``units`` (e.g. events processed) gives the per-unit figures ``self_us_per_<unit>``.
    """
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    fn()
    prof.disable()
    wall = time.perf_counter() - start
    entries = prof.getstats()
    total_self = sum(e.inlinetime for e in entries) or 1.0
    ranked = sorted(entries, key=lambda e: e.inlinetime, reverse=True)[:top]
    return {
        "tool": "cProfile (deterministic; adds overhead per Python call)",
        "wall_s_under_profiler": wall,
        "total_self_s": total_self,
        "units": units,
        "top_self": [
            {
                "function": _code_label(e.code),
                "self_s": e.inlinetime,
                "self_pct": 100.0 * e.inlinetime / total_self,
                "cumulative_s": e.totaltime,
                "calls": e.callcount,
                f"self_us_per_{unit}": 1e6 * e.inlinetime / units,
            }
            for e in ranked
        ],
    }


def profile_lines(title: str, profile: Mapping[str, Any], unit: str, n: int) -> list[str]:
    """The first ``n`` entries of a profile's ``top_self`` as printable lines."""
    key = f"self_us_per_{unit}"
    out = [title]
    out += [
        f"  {e['self_pct']:5.1f}%  {e[key]:7.2f} us/{unit}  {e['function']}"
        for e in profile["top_self"][:n]
    ]
    return out


# -- system description ------------------------------------------------------------------------


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (or what :mod:`platform` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "unknown"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def system_info() -> dict[str, Any]:
    """Date, interpreter, library versions, CPU: the header of the JSON file."""
    import numpy as np

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "load_average_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python_implementation": platform.python_implementation(),
        "river": _version("river"),
        "orjson": _version("orjson"),
        "pydantic": _version("pydantic"),
        "pydantic_core": _version("pydantic_core"),
        "git_commit": _git_commit(),
    }


# -- output ------------------------------------------------------------------------------------


def fmt(x: float) -> str:
    """Compact number: thousands separators for large values, 3 significant digits otherwise."""
    if math.isnan(x):
        return "nan"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.2f}" if abs(x) >= 0.01 else f"{x:.3g}"


def table(results: list[BenchResult]) -> str:
    """The results as an aligned text table."""
    header = ("benchmark", "metric", "median", "best", "unit", "target", "met")
    body: list[tuple[str, ...]] = []
    for res in results:
        for i, r in enumerate(res.rows):
            met = "" if r.met is None else ("yes" if r.met else "NO")
            name = res.name if i == 0 else ""
            body.append((name, r.metric, fmt(r.median), fmt(r.best), r.unit, r.target, met))
    widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]
    right = {2, 3}

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(widths[c]) if c in right else cell.ljust(widths[c])
            for c, cell in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` as indented JSON, creating the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
