"""RecoveryWatchdog's decisions over a recovery double (the real Faust recovery, stalled and
restarted, is in tests/test_worker_kafka.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from monitor.recovery_watchdog import RecoveryWatchdog, Verdict


@dataclass
class FakeRecovery:
    """The attributes of faust.tables.recovery.Recovery the watchdog reads."""

    in_recovery: bool = True
    active_offsets: dict[str, int | None] = field(default_factory=lambda: {"cl-0": -1})
    highwaters: dict[str, int] = field(default_factory=lambda: {"cl-0": 9})
    signal_recovery_start: asyncio.Event = field(default_factory=asyncio.Event)

    def active_remaining_total(self) -> int:
        offsets = {tp: -1 if o is None else o for tp, o in self.active_offsets.items()}
        return sum(h - offsets[tp] for tp, h in self.highwaters.items())

    def active_stats(self) -> Mapping[Any, Any]:
        return {tp: (h, self.active_offsets[tp]) for tp, h in self.highwaters.items()}


def test_a_recovery_that_reads_is_left_alone() -> None:
    dog, rec = RecoveryWatchdog(stall_seconds=5), FakeRecovery()
    for t in range(0, 60, 2):  # a record every 2 s for 60 s: each gap under the 5 s limit
        rec.active_offsets["cl-0"] = t // 2
        assert dog.check(rec, float(t)) is Verdict.OK
    assert not rec.signal_recovery_start.is_set() and dog.restarts == 0


def test_no_recovery_or_nothing_remaining_is_never_a_stall() -> None:
    dog = RecoveryWatchdog(stall_seconds=1)
    idle = FakeRecovery(in_recovery=False)
    done = FakeRecovery(active_offsets={"cl-0": 9})
    for t in range(10):
        assert dog.check(idle, float(t)) is Verdict.OK
        assert dog.check(done, float(t)) is Verdict.OK
    assert dog.restarts == 0


def test_a_stall_restarts_recovery_after_stall_seconds(caplog: pytest.LogCaptureFixture) -> None:
    dog, rec = RecoveryWatchdog(stall_seconds=5), FakeRecovery()
    assert dog.check(rec, 100.0) is Verdict.OK  # recovery seen: the clock starts
    assert dog.check(rec, 104.9) is Verdict.OK
    with caplog.at_level(logging.WARNING, logger="driftwatch.recovery"):
        assert dog.check(rec, 105.0) is Verdict.RESTARTED
    assert rec.signal_recovery_start.is_set()
    assert dog.restarts == 1
    assert "restarting it (1 of 3)" in caplog.text and "cl-0" in caplog.text
    # The restarted recovery gets its own stall_seconds.
    rec.signal_recovery_start.clear()
    assert dog.check(rec, 106.0) is Verdict.OK
    assert dog.check(rec, 110.9) is Verdict.OK
    assert dog.check(rec, 111.0) is Verdict.RESTARTED


def test_it_gives_up_after_max_restarts_and_a_completed_recovery_resets_the_count() -> None:
    dog, rec = RecoveryWatchdog(stall_seconds=1, max_restarts=2), FakeRecovery()
    verdicts = [dog.check(rec, t / 2) for t in range(0, 20)]
    assert verdicts.count(Verdict.RESTARTED) == 2
    assert Verdict.GIVE_UP in verdicts and dog.gave_up
    assert verdicts.index(Verdict.GIVE_UP) > max(
        i for i, v in enumerate(verdicts) if v is Verdict.RESTARTED
    )

    dog, rec = RecoveryWatchdog(stall_seconds=1, max_restarts=1), FakeRecovery()
    assert [dog.check(rec, t) for t in (0.0, 1.0)] == [Verdict.OK, Verdict.RESTARTED]
    rec.in_recovery = False  # the restart worked
    assert dog.check(rec, 2.0) is Verdict.OK
    rec.in_recovery = True  # a later rebalance, a later stall: one restart again, not give up
    assert [dog.check(rec, t) for t in (3.0, 4.0)] == [Verdict.OK, Verdict.RESTARTED]
    assert dog.restarts == 2 and not dog.gave_up
