"""The last resort against a bug on input nobody foresaw: one input, not the whole run.

Every decoder turns bad input into a :class:`~monitor.events.Rejection`; an exception that
still escapes the decoders or the pipeline is a bug, but it must not stop the worker or a
replay, nor make Kafka deliver the same message again after every restart. The Kafka adapter
and ``driftwatch replay`` catch it around a batch (free when nothing is raised), find the input
that raises on its own, and reject it as ``internal_error``: a dead letter with the exception's
class in a header, and a count. The counters of the failed attempt are rolled back
(:func:`snapshot`, :func:`restore`), so that a retried input is counted once.

:class:`ErrorLog` logs each kind of failure once with its traceback, then a line a minute at
most with how many more there were: a poison producer must not flood the log.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import Counter

from monitor.events import Reason, Rejection
from monitor.pipeline import PipelineStats

#: The counters of :class:`PipelineStats` that count input (each input once); windows, alerts
#: and duplicates count effects, which a failed attempt did have.
Counts = tuple[int, int, dict[str, int], dict[str, int], dict[str, int]]


def snapshot(stats: PipelineStats) -> Counts:
    """The input counters of ``stats`` (a few dict copies: cheap enough per batch)."""
    return (
        stats.lines,
        stats.accepted,
        dict(stats.rejected),
        dict(stats.warnings),
        dict(stats.events),
    )


def restore(stats: PipelineStats, counts: Counts) -> None:
    """Put the input counters back as :func:`snapshot` found them (in place: the metrics
    collector holds the pipeline's stats, not copies)."""
    stats.lines, stats.accepted = counts[0], counts[1]
    for counter, saved in zip(
        (stats.rejected, stats.warnings, stats.events), counts[2:], strict=True
    ):
        counter.clear()
        counter.update(saved)


def internal_rejection(exc: BaseException, offset: int) -> Rejection:
    """The rejection of an input that raised ``exc``: reason ``internal_error``."""
    text = f"{type(exc).__name__}: {exc}"
    return Rejection(Reason.INTERNAL_ERROR, f"internal error: {text[:500]}", offset)


class ErrorLog:
    """Logs unexpected exceptions without flooding the log.

    The first exception of each kind (its class and the line that raised it; at most
    ``max_kinds`` kinds remembered) is logged with its traceback; later ones are counted and
    summed up in one line at most every ``interval`` seconds. ``counts`` holds the total per
    exception class.
    """

    def __init__(
        self, logger: logging.Logger, interval: float = 60.0, max_kinds: int = 100
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.max_kinds = max_kinds
        self.counts: Counter[str] = Counter()
        self._kinds: set[tuple[str, str, int]] = set()
        self._suppressed = 0
        self._last = time.monotonic()

    def report(self, exc: BaseException, where: str) -> None:
        """Log ``exc``, raised while handling ``where`` (e.g. ``topic/partition@offset``)."""
        name = type(exc).__name__
        self.counts[name] += 1
        frames = traceback.extract_tb(exc.__traceback__)
        last = frames[-1] if frames else None
        kind = (name, last.filename if last else "", (last.lineno or 0) if last else 0)
        if kind not in self._kinds and len(self._kinds) < self.max_kinds:
            self._kinds.add(kind)
            self.logger.error(
                "internal error on %s, rejected as internal_error: %s: %s",
                where,
                name,
                exc,
                exc_info=exc,
            )
            return
        self._suppressed += 1
        now = time.monotonic()
        if now - self._last >= self.interval:
            self.logger.error(
                "%d more inputs rejected as internal_error in the last %.0f s (latest: %s on "
                "%s: %s; tracebacks of each kind are logged once)",
                self._suppressed,
                now - self._last,
                name,
                where,
                exc,
            )
            self._suppressed = 0
            self._last = now
