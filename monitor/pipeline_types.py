"""What the pipeline reports: its counts (:class:`PipelineStats`) and the observers of its
windows (:class:`WindowObserver`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from detectors.performance import ErrorWindow
from detectors.window import WindowReport
from monitor.fastdecode import AnyEvent
from monitor.streams import ModelStream


@dataclass(slots=True)
class PipelineStats:
    """Counts since start: ``lines`` = ``accepted`` + sum of ``rejected``."""

    lines: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    windows: int = 0
    duplicates: int = 0
    restored: int = 0
    #: Streams rebuilt because another worker advanced their checkpoints (a rebalance).
    stale: int = 0
    #: Idle streams dropped to make room (``limits``).
    evicted: int = 0
    alerts: Counter[tuple[str, str]] = field(default_factory=Counter)


class WindowObserver(Protocol):
    """Told about every closed window (metrics, traces, the status page).

    Called synchronously inside ``process_*`` once per window, never per event: it must be
    cheap and do no I/O. ``events`` are the window's events, in order. An observer may also
    have ``stream_evicted(stream)``, called when a stream is dropped (``limits``) so that it
    forgets what it keeps for it.
    """

    def window_closed(
        self, stream: ModelStream, report: WindowReport, events: Sequence[AnyEvent]
    ) -> None:
        """A window of ``stream`` was evaluated (before its alerts are decided)."""

    def error_window(self, stream: ModelStream, window: ErrorWindow) -> None:
        """A window of labelled events of ``stream`` was evaluated."""
