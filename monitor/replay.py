"""``driftwatch replay``: the pipeline over a JSONL file, exactly as over the live stream.

Event time drives every window and duration, so a replay of a recorded stream decides the same
alerts at the same events as the live worker would.

A line whose handling raises an unexpected exception (a bug, see :mod:`monitor.guard`) is
counted as rejected ``internal_error`` and the replay goes on: a chunk of lines that raises is
fed again line by line to find it. Replay skips no re-delivered input (it has no checkpoints),
so events of that chunk that the failed call had already applied to a window before the
exception are applied again; the counts stay exact.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from alerting.sinks import AlertSink
from alerting.types import Transition
from monitor.gctune import fewer_collections
from monitor.guard import ErrorLog, internal_rejection, restore, snapshot
from monitor.pipeline import Pipeline, PipelineStats
from monitor.references import iter_lines

log = logging.getLogger("driftwatch.replay")


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay did: the pipeline's counts and how long it took."""

    stats: PipelineStats
    seconds: float

    @property
    def events_per_second(self) -> float:
        """Input lines per second of wall time."""
        return self.stats.lines / self.seconds if self.seconds > 0 else 0.0


def replay(
    path: str | Path,
    pipeline: Pipeline,
    sink: AlertSink | None = None,
    progress: bool | None = None,
) -> ReplayResult:
    """Feed every line of ``path`` through ``pipeline``; state changes go to ``sink``.

    ``progress`` shows a progress bar on stderr (default: when stderr is a terminal).
    """
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=os.path.getsize(path),
            unit="B",
            unit_scale=True,
            desc="replay",
            file=sys.stderr,
        )
    start = time.perf_counter()
    offset = 0
    errors = ErrorLog(log)
    stats = pipeline.stats
    try:
        with fewer_collections():
            for lines in iter_lines(path):
                counts = snapshot(stats)
                out: list[Transition] = []
                try:
                    pipeline.process_lines(lines, offset, "", out)
                    failed = False
                except Exception:
                    restore(stats, counts)
                    failed = True
                if failed:  # outside the handler: a line's traceback is its own
                    out += _line_by_line(pipeline, lines, offset, errors)
                offset += len(lines)
                if sink is not None and out:
                    sink.send(out)
                if bar is not None:
                    bar.update(sum(map(len, lines)))
    finally:
        if bar is not None:
            bar.close()
    return ReplayResult(pipeline.stats, time.perf_counter() - start)


def _line_by_line(
    pipeline: Pipeline, lines: list[bytes], offset: int, errors: ErrorLog
) -> list[Transition]:
    """Feed ``lines`` one by one; a line that raises is rejected as ``internal_error``."""
    out: list[Transition] = []
    stats = pipeline.stats
    for k, raw in enumerate(lines):
        counts = snapshot(stats)
        try:
            pipeline.process_lines([raw], offset + k, "", out)
        except Exception as exc:
            restore(stats, counts)
            pipeline.reject(internal_rejection(exc, offset + k))
            errors.report(exc, f"line {offset + k + 1}")
    return out


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def format_summary(result: ReplayResult, out: TextIO | None = None) -> str:
    """The end-of-replay table: events, rejections by reason, alerts by name and state."""
    s = result.stats
    rows = [
        ("lines read", f"{s.lines:,}"),
        ("accepted", f"{s.accepted:,}"),
        ("rejected", f"{sum(s.rejected.values()):,}"),
    ]
    rows += [(f"  rejected: {r}", f"{c:,}") for r, c in sorted(s.rejected.items())]
    rows += [(f"  warning: {r}", f"{c:,}") for r, c in sorted(s.warnings.items())]
    rows += [(f"events: {k}", f"{c:,}") for k, c in sorted(s.events.items())]
    rows += [
        ("windows evaluated", f"{s.windows:,}"),
        ("wall time", f"{result.seconds:.2f} s ({result.events_per_second:,.0f} lines/s)"),
    ]
    text = "Replay summary\n" + _table(rows)
    if s.alerts:
        names = sorted({n for n, _ in s.alerts})
        states = ["pending", "firing", "resolved", "transient", "flapping"]
        w = max(len(n) for n in [*names, "alert"])
        lines = [
            "",
            "",
            "Alerts by state",
            "  " + "alert".ljust(w) + "".join(f"{x:>11}" for x in states),
        ]
        for n in names:
            lines.append("  " + n.ljust(w) + "".join(f"{s.alerts[(n, x)]:>11,}" for x in states))
        text += "\n".join(lines)
    else:
        text += "\n\nNo alert state changes."
    reconciled = s.accepted + sum(s.rejected.values()) == s.lines
    text += f"\n\naccepted + rejected = lines read: {'yes' if reconciled else 'NO'}"
    if out is not None:
        out.write(text + "\n")
    return text
