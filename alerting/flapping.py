"""Flap detection in the manner of Nagios: a weighted share of state changes in recent evaluations.

For every alert (fingerprint) the detector keeps whether its condition held in each of the last
``window`` evaluations of its group. Walking from the oldest to the newest entry, every change
of state adds a weight that grows linearly from ``low_weight`` (oldest change) to
``high_weight`` (newest), and

    percent_state_change = 100 * sum(weights) / (window - 1)

so twenty changes in twenty-one evaluations make 100 %. An alert *starts* flapping when the
percentage reaches ``high_threshold`` and *stops* only when it falls to ``low_threshold`` or
below (hysteresis), as in Nagios Core's ``base/flapping.c``.

Defaults, against the two systems this copies:

=================  ======================  =====================  ======================
                   driftwatch              Nagios Core            Icinga 2
=================  ======================  =====================  ======================
history            21 evaluations          21 checks              20 change bits
weights            0.75 .. 1.25            0.75 .. 1.25           0.80 .. 1.18
start              >= 20 %                 >= 20 % (sample cfg;   > 30 %
                                           compiled default 30)
stop               <= 5 %                  <= 5 % (sample cfg;    <= 25 %
                                           compiled default 20)
on by default      yes                     yes (sample cfg)       no
=================  ======================  =====================  ======================

Why Nagios' sample thresholds: a condition that toggles every four windows (the ``flapping``
simulation: a shift switched on and off every 4,000 events, 1,000-event windows) changes
state about five times in twenty evaluations, 20-26 %: it must count as flapping, which
Icinga's 30 % never reaches. One fire/resolve cycle (two changes) stays near 12 %. The low
threshold of 5 % means flapping ends only once at most one change remains in the history,
i.e. about twenty quiet evaluations after the toggling stops, so one episode gives one
``flapping`` notification, not several.

Unlike Nagios, which records only hard states (and soft recoveries), driftwatch records the
raw condition of every evaluation: a condition that toggles faster than ``for`` never becomes
a hard (firing) state, and exactly that is the flapping to catch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True)
class FlapSettings:
    """What counts as flapping (see the module docstring for the defaults' reasons).

    Parameters
    ----------
    window
        Evaluations kept per alert (21, as Nagios' ``MAX_STATE_HISTORY_ENTRIES``).
    low_threshold, high_threshold
        Percent state change at or below which flapping stops (5) and at or above which it
        starts (20).
    low_weight, high_weight
        Weight of the oldest and of the newest state change (0.75 and 1.25).
    """

    window: int = 21
    low_threshold: float = 5.0
    high_threshold: float = 20.0
    low_weight: float = 0.75
    high_weight: float = 1.25

    def __post_init__(self) -> None:
        if not 3 <= self.window <= 64:
            raise ValueError("window must be between 3 and 64 evaluations")
        if not 0 <= self.low_threshold < self.high_threshold <= 100:
            raise ValueError("need 0 <= low_threshold < high_threshold <= 100")
        if not 0 < self.low_weight <= self.high_weight:
            raise ValueError("need 0 < low_weight <= high_weight")


def percent_state_change(bits: int, settings: FlapSettings) -> float:
    """Weighted percent of state changes in a history (newest evaluation in bit 0).

    >>> s = FlapSettings()
    >>> percent_state_change(0b1, s)  # one change, the newest
    6.25
    >>> percent_state_change((1 << 20) - 1, s)  # one change, the oldest
    3.75
    >>> percent_state_change(int("01" * 10 + "0", 2), s)  # every evaluation changes
    100.0
    """
    n = settings.window
    changes = (bits ^ (bits >> 1)) & ((1 << (n - 1)) - 1)
    total = 0.0
    step = (settings.high_weight - settings.low_weight) / (n - 2)
    j = 0
    while changes:
        if changes & 1:
            # Bit j compares evaluations j and j+1 (0 = newest): change number n-1-j counted
            # from the oldest, whose weight is low_weight + (x - 1) * step.
            total += settings.low_weight + (n - 2 - j) * step
        changes >>= 1
        j += 1
    return round(total * 100.0 / (n - 1), 6)


@dataclass(slots=True)
class FlapHistory:
    """The recent conditions of one alert, and what a flapping notification needs to say."""

    group: str
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    bits: int = 0
    percent: float = 0.0
    flapping_since: float | None = None


class FlapChange(NamedTuple):
    """An alert started (``started``) or stopped flapping at an evaluation."""

    fingerprint: str
    history: FlapHistory
    started: bool


class FlapDetector:
    """Weighted state-change history per alert, with start/stop hysteresis.

    ``observe`` is called once per evaluation of a group with the alerts whose condition
    holds; every other alert of the group with a history records "does not hold". A history
    with no condition in its window and no flapping is forgotten, so memory follows the alerts
    that recently held. Does no I/O; :meth:`snapshot` / :meth:`restore` give JSON.

    >>> d = FlapDetector()
    >>> on = {"fp": ("X", {"alertname": "X"}, {})}
    >>> changes = [d.observe("g", float(t), on if (t // 2) % 2 == 0 else {}) for t in range(12)]
    >>> [(t, c.started) for t, cs in enumerate(changes) for c in cs]
    [(6, True)]
    """

    def __init__(self, settings: FlapSettings | None = None) -> None:
        self.settings = settings or FlapSettings()
        self._mask = (1 << self.settings.window) - 1
        self._histories: dict[str, FlapHistory] = {}
        self._groups: dict[str, set[str]] = {}

    def is_flapping(self, fp: str) -> bool:
        """Whether the alert with fingerprint ``fp`` is flapping now."""
        h = self._histories.get(fp)
        return h is not None and h.flapping_since is not None

    def history(self, fp: str) -> FlapHistory | None:
        """The history of ``fp`` if it is kept."""
        return self._histories.get(fp)

    def flapping_in(self, group: str) -> list[FlapChange]:
        """The alerts of ``group`` flapping now, as the changes that started them."""
        out = []
        for fp in sorted(self._groups.get(group, ())):
            h = self._histories[fp]
            if h.flapping_since is not None:
                out.append(FlapChange(fp, h, True))
        return out

    def observe(
        self,
        group: str,
        now: float,
        present: Mapping[str, tuple[str, dict[str, str], dict[str, str]]],
    ) -> list[FlapChange]:
        """Record one evaluation of ``group``: ``present`` maps the fingerprints whose condition
        holds to (alertname, labels, annotations). Returns the starts and stops it caused."""
        s = self.settings
        members = self._groups.setdefault(group, set())
        out: list[FlapChange] = []
        for fp in sorted(members | present.keys()):
            h = self._histories.get(fp)
            info = present.get(fp)
            if h is None:
                if info is None:
                    continue
                h = FlapHistory(group, info[0], dict(info[1]))
                self._histories[fp] = h
                members.add(fp)
            if info is not None:
                h.annotations = dict(info[2])
            h.bits = ((h.bits << 1) | (info is not None)) & self._mask
            h.percent = percent_state_change(h.bits, s)
            if h.flapping_since is None and h.percent >= s.high_threshold:
                h.flapping_since = now
                out.append(FlapChange(fp, h, True))
            elif h.flapping_since is not None and h.percent <= s.low_threshold:
                out.append(FlapChange(fp, h, False))
                h.flapping_since = None
            if h.bits == 0 and h.flapping_since is None:
                del self._histories[fp]
                members.discard(fp)
        return out

    def snapshot(self, group: str | None = None) -> dict[str, Any]:
        """JSON-friendly state: every kept history (of ``group`` only, if given)."""
        fps = sorted(self._histories if group is None else self._groups.get(group, ()))
        return {"histories": {fp: asdict(self._histories[fp]) for fp in fps}}

    def restore(self, state: Mapping[str, Any], group: str | None = None) -> None:
        """Replace the state (of ``group`` only, if given) with one taken by :meth:`snapshot`."""
        if group is None:
            self._histories, self._groups = {}, {}
        else:
            for fp in self._groups.pop(group, set()):
                self._histories.pop(fp, None)
        for fp, raw in state.get("histories", {}).items():
            h = FlapHistory(**raw)
            if group is not None and h.group != group:
                continue
            h.bits &= self._mask
            self._histories[fp] = h
            self._groups.setdefault(h.group, set()).add(fp)
