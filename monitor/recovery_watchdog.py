"""Restart Faust's table recovery when it stops making progress.

After a rebalance, the worker reads its checkpoint changelog partitions up to their highwater
before it processes input ("active recovery"). Faust 0.15 can hang there: no record of a
changelog partition arrives, the partition stays short of its highwater, and the worker logs
"No event received for active tp ... since recovery start" every 5 s for ever while its input
waits. In the test suite this happened twice in seven full runs on a loaded machine, both
times after two rebalances 3 s apart (a worker leaving the group); the cause inside Faust is
not known. Faust issues #155 and #74 describe similar hangs.

:class:`RecoveryWatchdog` is checked once a second by the worker. When active recovery has
read nothing for ``stall_seconds`` while records remain, it signals Faust's recovery service
to start over, as a new rebalance would: highwaters and start offsets are fetched again and
the changelog partitions are sought and resumed, which re-reads whatever was lost. After
``max_restarts`` restarts without recovery completing, it gives up: it returns
:attr:`Verdict.GIVE_UP` and sets ``gave_up``, and the worker stops and exits with status 1,
so that its supervisor starts a fresh process (whose recovery reads every changelog
partition from the start).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("driftwatch.recovery")


class Recovery(Protocol):
    """What the watchdog reads of ``faust.tables.recovery.Recovery`` (``app.tables.recovery``)."""

    @property
    def in_recovery(self) -> bool: ...

    @property
    def active_offsets(self) -> Mapping[Any, int | None]: ...

    @property
    def signal_recovery_start(self) -> Any: ...

    def active_remaining_total(self) -> int: ...

    def active_stats(self) -> Mapping[Any, Any]: ...


class Verdict(enum.Enum):
    """What :meth:`RecoveryWatchdog.check` decided."""

    OK = "ok"
    RESTARTED = "restarted"
    GIVE_UP = "give_up"


@dataclass
class RecoveryWatchdog:
    """Watches one worker's active recovery (see the module docstring).

    ``stall_seconds`` (``kafka.recovery_stall_seconds``, 30 by default): how long active
    recovery may read no changelog record while records remain before it is restarted. Faust
    itself warns after 60 s of no progress; a changelog read normally delivers records within a
    fetch wait (``kafka.fetch_max_wait_ms``). ``max_restarts``: restarts of one recovery before
    the worker gives up. ``restarts`` counts every restart since the worker started.
    """

    stall_seconds: float = 30.0
    max_restarts: int = 3
    restarts: int = 0
    gave_up: bool = False
    _since: float | None = None
    _offsets: dict[Any, int | None] | None = None
    _attempts: int = 0

    def check(self, recovery: Recovery, now: float) -> Verdict:
        """Look at ``recovery`` at monotonic time ``now``; restart it when it stalled."""
        if not recovery.in_recovery or recovery.active_remaining_total() <= 0:
            self._since, self._offsets, self._attempts = None, None, 0
            return Verdict.OK
        offsets = dict(recovery.active_offsets)
        if self._since is None or offsets != self._offsets:
            self._since, self._offsets = now, offsets  # progress (or the start of a recovery)
            return Verdict.OK
        if now - self._since < self.stall_seconds:
            return Verdict.OK
        stats = {str(tp): repr(s) for tp, s in recovery.active_stats().items()}
        if self._attempts >= self.max_restarts:
            log.error(
                "table recovery made no progress for %.0f s after %d restarts; giving up "
                "(remaining: %s)",
                now - self._since,
                self._attempts,
                stats,
            )
            self.gave_up = True
            return Verdict.GIVE_UP
        self._attempts += 1
        self.restarts += 1
        log.warning(
            "table recovery read nothing for %.0f s with records remaining (%s); restarting it "
            "(%d of %d)",
            now - self._since,
            stats,
            self._attempts,
            self.max_restarts,
        )
        self._since, self._offsets = now, None
        recovery.signal_recovery_start.set()
        return Verdict.RESTARTED
