"""Score an alert stream against the truth written by :mod:`monitor.scenarios.simulate`.

An incident with line window ``[first_offset, last_offset + grace_events]`` is *detected* by
the first ``"firing"`` record (lowest ``offset``; file order breaks ties) inside that window
whose alertname equals the incident's, whose ``labels.feature`` is one of the incident's
``features`` (when that list is non-empty) and whose ``labels.check`` is one of its
``checks`` (when non-empty).  A firing record may detect several incidents (e.g. overlapping
grace windows of a flapping scenario); matching is not one-to-one.

Every other firing record is classified as

* *false*: its offset is outside every incident window, or
* *collateral*: inside at least one window but matching none of the incidents whose window
  contains it,

and otherwise counts as *matching* (a detection or a repeat of one).  The false-firing rate
is expressed per million lines outside the union of incident windows (clipped to the file).
Only ``"firing"`` records are scored; ``pending``/``resolved``/``transient``/``flapping``
records are counted but otherwise ignored.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import orjson

__all__ = [
    "AlertRef",
    "Evaluation",
    "IncidentResult",
    "evaluate",
    "evaluate_files",
    "format_evaluation",
    "read_alerts",
]


@dataclass(frozen=True)
class AlertRef:
    """A firing record referenced by the evaluation."""

    offset: int
    alertname: str
    labels: dict[str, Any]
    starts_at: str | None


@dataclass(frozen=True)
class IncidentResult:
    """Outcome for one truth incident."""

    kind: str
    alertname: str
    features: tuple[str, ...]
    checks: tuple[str, ...]
    first_offset: int
    last_offset: int
    window_end: int
    first_time: str | None
    detected: bool
    delay_events: int | None
    delay_seconds: float | None
    alert: AlertRef | None


@dataclass(frozen=True)
class Evaluation:
    """The scored result of an alert stream against a truth document."""

    scenario: str | None
    lines: int
    rate: float | None
    grace_events: int
    incidents: tuple[IncidentResult, ...]
    records: int
    firing: int
    matching_firing: int
    false_firing: int
    events_outside: int
    false_firing_per_million: float | None
    collateral_firing: int
    false_alerts: tuple[AlertRef, ...]
    collateral_alerts: tuple[AlertRef, ...]

    @property
    def detected(self) -> int:
        """Number of detected incidents."""
        return sum(1 for i in self.incidents if i.detected)

    @property
    def missed(self) -> int:
        """Number of incidents without a matching firing record."""
        return len(self.incidents) - self.detected

    @property
    def mean_delay_events(self) -> float | None:
        """Mean detection delay in lines over detected incidents (None if none)."""
        delays = [i.delay_events for i in self.incidents if i.delay_events is not None]
        return sum(delays) / len(delays) if delays else None

    @property
    def mean_delay_seconds(self) -> float | None:
        """Mean detection delay in seconds over detected incidents (None if unknown)."""
        delays = [i.delay_seconds for i in self.incidents if i.delay_seconds is not None]
        return sum(delays) / len(delays) if delays else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists; summary counts included)."""
        out = asdict(self)
        out["detected"] = self.detected
        out["missed"] = self.missed
        out["mean_delay_events"] = self.mean_delay_events
        out["mean_delay_seconds"] = self.mean_delay_seconds
        result: dict[str, Any] = _jsonable(out)
        return result


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _str_tuple(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"truth incident {what} must be a list of strings, got {value!r}")
    return tuple(value)


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return value


@dataclass(frozen=True)
class _Incident:
    kind: str
    alertname: str
    features: tuple[str, ...]
    checks: tuple[str, ...]
    first: int
    last: int
    end: int
    first_time: str | None

    def contains(self, offset: int) -> bool:
        return self.first <= offset <= self.end

    def matches(self, alert: AlertRef) -> bool:
        if alert.alertname != self.alertname:
            return False
        if self.features and alert.labels.get("feature") not in self.features:
            return False
        return not (self.checks and alert.labels.get("check") not in self.checks)


def _incidents(truth: Mapping[str, Any], grace_events: int) -> list[_Incident]:
    out = []
    for k, raw in enumerate(truth.get("incidents") or []):
        if not isinstance(raw, Mapping):
            raise ValueError(f"truth incident {k} must be an object")
        first = _int(raw.get("first_offset"), f"incident {k} first_offset")
        last = _int(raw.get("last_offset"), f"incident {k} last_offset")
        if last < first:
            raise ValueError(f"incident {k}: last_offset {last} < first_offset {first}")
        first_time = raw.get("first_time")
        out.append(
            _Incident(
                kind=str(raw.get("kind", "")),
                alertname=str(raw.get("alertname", "")),
                features=_str_tuple(raw.get("features"), "features"),
                checks=_str_tuple(raw.get("checks"), "checks"),
                first=first,
                last=last,
                end=last + grace_events,
                first_time=first_time if isinstance(first_time, str) else None,
            )
        )
    return out


def _firing(alerts: Iterable[Mapping[str, Any]]) -> tuple[int, list[AlertRef]]:
    records = 0
    firing: list[AlertRef] = []
    for k, rec in enumerate(alerts):
        records += 1
        if rec.get("state") != "firing":
            continue
        labels = rec.get("labels")
        labels = dict(labels) if isinstance(labels, Mapping) else {}
        alertname = rec.get("alertname", labels.get("alertname"))
        starts = rec.get("startsAt")
        firing.append(
            AlertRef(
                offset=_int(rec.get("offset"), f"alert record {k} offset"),
                alertname=str(alertname),
                labels=labels,
                starts_at=starts if isinstance(starts, str) else None,
            )
        )
    firing.sort(key=lambda a: a.offset)  # stable: file order breaks ties
    return records, firing


def _union_length(windows: Sequence[tuple[int, int]]) -> int:
    total, cur_lo, cur_hi = 0, 0, -1
    for lo, hi in sorted(windows):
        if lo > cur_hi + 1:
            total += cur_hi - cur_lo + 1 if cur_hi >= cur_lo else 0
            cur_lo, cur_hi = lo, hi
        else:
            cur_hi = max(cur_hi, hi)
    total += cur_hi - cur_lo + 1 if cur_hi >= cur_lo else 0
    return total


def evaluate(
    alerts: Iterable[Mapping[str, Any]],
    truth: Mapping[str, Any],
    *,
    grace_events: int = 20_000,
) -> Evaluation:
    """Score alert state-change records against a simulation truth document."""
    if isinstance(grace_events, bool) or not isinstance(grace_events, int) or grace_events < 0:
        raise ValueError(f"grace_events must be an integer >= 0, got {grace_events!r}")
    incidents = _incidents(truth, grace_events)
    lines = truth.get("lines", truth.get("events", 0))
    lines = _int(lines, "truth lines")
    raw_rate = truth.get("rate")
    rate = (
        float(raw_rate)
        if isinstance(raw_rate, int | float) and not isinstance(raw_rate, bool) and raw_rate > 0
        else None
    )
    records, firing = _firing(alerts)

    results = []
    for inc in incidents:
        hit = next((a for a in firing if inc.contains(a.offset) and inc.matches(a)), None)
        delay_events = None if hit is None else hit.offset - inc.first
        delay_seconds: float | None = None
        if hit is not None:
            started, began = _parse_time(hit.starts_at), _parse_time(inc.first_time)
            if started is not None and began is not None:
                delay_seconds = (started - began).total_seconds()
            elif rate is not None and delay_events is not None:
                delay_seconds = delay_events / rate
        results.append(
            IncidentResult(
                kind=inc.kind,
                alertname=inc.alertname,
                features=inc.features,
                checks=inc.checks,
                first_offset=inc.first,
                last_offset=inc.last,
                window_end=inc.end,
                first_time=inc.first_time,
                detected=hit is not None,
                delay_events=delay_events,
                delay_seconds=delay_seconds,
                alert=hit,
            )
        )

    false_alerts: list[AlertRef] = []
    collateral: list[AlertRef] = []
    matching = 0
    for alert in firing:
        containing = [inc for inc in incidents if inc.contains(alert.offset)]
        if not containing:
            false_alerts.append(alert)
        elif any(inc.matches(alert) for inc in containing):
            matching += 1
        else:
            collateral.append(alert)

    clipped = [
        (max(0, inc.first), min(lines - 1, inc.end))
        for inc in incidents
        if inc.first <= lines - 1 and inc.end >= 0
    ]
    outside = max(0, lines - _union_length(clipped))
    per_million = len(false_alerts) / outside * 1e6 if outside > 0 else None
    scenario = truth.get("scenario")
    return Evaluation(
        scenario=scenario if isinstance(scenario, str) else None,
        lines=lines,
        rate=rate,
        grace_events=grace_events,
        incidents=tuple(results),
        records=records,
        firing=len(firing),
        matching_firing=matching,
        false_firing=len(false_alerts),
        events_outside=outside,
        false_firing_per_million=per_million,
        collateral_firing=len(collateral),
        false_alerts=tuple(false_alerts),
        collateral_alerts=tuple(collateral),
    )


def read_alerts(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSONL alerts file (blank lines skipped; ``NaN`` tolerated)."""
    out: list[dict[str, Any]] = []
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                try:
                    rec = json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{os.fspath(path)}:{number}: invalid JSON: {exc}") from exc
            if not isinstance(rec, dict):
                raise ValueError(f"{os.fspath(path)}:{number}: alert record must be an object")
            out.append(rec)
    return out


def evaluate_files(
    alerts_path: str | os.PathLike[str],
    truth_path: str | os.PathLike[str],
    *,
    grace_events: int = 20_000,
) -> Evaluation:
    """Load an alerts JSONL file and a truth JSON file and :func:`evaluate` them."""
    with open(truth_path, "rb") as fh:
        truth = orjson.loads(fh.read())
    if not isinstance(truth, dict):
        raise ValueError(f"{os.fspath(truth_path)}: truth must be a JSON object")
    return evaluate(read_alerts(alerts_path), truth, grace_events=grace_events)


def _fmt_num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
    return lines


def _alert_desc(alert: AlertRef) -> str:
    extras = [f"{k}={alert.labels[k]}" for k in ("feature", "check") if k in alert.labels]
    return " ".join([alert.alertname, *extras])


def format_evaluation(ev: Evaluation) -> str:
    """Render an :class:`Evaluation` as an aligned plain-text report."""
    out = [
        f"scenario: {ev.scenario or '-'}   lines: {ev.lines}   rate: {_fmt_num(ev.rate)}/s   "
        f"grace: {ev.grace_events} lines",
        f"alert records: {ev.records}   firing: {ev.firing}   matching: {ev.matching_firing}",
        "",
    ]
    if ev.incidents:
        rows = [
            [
                inc.kind,
                inc.alertname,
                ",".join(inc.features) or "-",
                ",".join(inc.checks) or "-",
                f"{inc.first_offset}-{inc.last_offset}",
                "yes" if inc.detected else "MISSED",
                "-" if inc.delay_events is None else str(inc.delay_events),
                _fmt_num(inc.delay_seconds, 2),
                "-" if inc.alert is None else _alert_desc(inc.alert),
            ]
            for inc in ev.incidents
        ]
        header = ["kind", "alertname", "features", "checks", "lines", "detected"]
        header += ["delay_ev", "delay_s", "matched alert"]
        out.extend(_table(header, rows))
    else:
        out.append("no incidents in truth")
    out.append("")
    out.append(
        f"detected: {ev.detected}/{len(ev.incidents)}   missed: {ev.missed}   "
        f"mean delay: {_fmt_num(ev.mean_delay_events)} lines / "
        f"{_fmt_num(ev.mean_delay_seconds, 2)} s"
    )
    out.append(
        f"false firing: {ev.false_firing} over {ev.events_outside} lines outside incidents "
        f"({_fmt_num(ev.false_firing_per_million, 2)} per million)   "
        f"collateral firing: {ev.collateral_firing}"
    )
    if ev.false_alerts or ev.collateral_alerts:
        rows = [
            [kind, str(a.offset), _alert_desc(a), a.starts_at or "-"]
            for kind, alerts in (("false", ev.false_alerts), ("collateral", ev.collateral_alerts))
            for a in alerts[:20]
        ]
        out.append("")
        out.extend(_table(["class", "offset", "alert", "startsAt"], rows))
    return "\n".join(out)
