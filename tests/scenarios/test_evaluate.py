"""Tests for alert scoring against simulation truth (:mod:`monitor.scenarios.evaluate`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.scenarios.evaluate import Evaluation, evaluate, evaluate_files, format_evaluation
from monitor.scenarios.simulate import generate

LINES = 100_000
RATE = 100.0


def _incident(
    first: int,
    last: int,
    *,
    alertname: str = "FeatureDrift",
    features: list[str] | None = None,
    checks: list[str] | None = None,
    kind: str = "abrupt-shift",
) -> dict[str, Any]:
    return {
        "kind": kind,
        "alertname": alertname,
        "checks": checks or [],
        "features": ["credit_score"] if features is None else features,
        "first_offset": first,
        "last_offset": last,
        "first_time": _time(first),
        "last_time": _time(last),
    }


def _time(offset: int) -> str:
    total_ms = int(offset * 1000 / RATE)
    seconds, ms = divmod(total_ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"2026-01-01T{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}Z"


def _truth(*incidents: dict[str, Any], lines: int = LINES) -> dict[str, Any]:
    return {
        "scenario": "hand-built",
        "seed": 0,
        "events": lines,
        "lines": lines,
        "rate": RATE,
        "model": "fraud",
        "model_version": "v1",
        "incidents": list(incidents),
    }


def _alert(
    offset: int,
    alertname: str = "FeatureDrift",
    *,
    state: str = "firing",
    feature: str | None = "credit_score",
    check: str | None = None,
    starts_at: str | None = "default",
) -> dict[str, Any]:
    labels: dict[str, Any] = {
        "alertname": alertname,
        "model": "fraud",
        "model_version": "v1",
        "severity": "warning",
    }
    if feature is not None:
        labels["feature"] = feature
    if check is not None:
        labels["check"] = check
    rec: dict[str, Any] = {
        "state": state,
        "alertname": alertname,
        "labels": labels,
        "annotations": {"summary": "test"},
        "endsAt": None,
        "offset": offset,
    }
    if starts_at is not None:
        rec["startsAt"] = _time(offset) if starts_at == "default" else starts_at
    return rec


def test_detection_and_delays() -> None:
    truth = _truth(_incident(40_000, 99_999))
    alerts = [
        _alert(40_300, state="pending"),
        _alert(40_500, starts_at="2026-01-01T00:06:44.000Z"),
        _alert(41_000),
    ]
    ev = evaluate(alerts, truth)
    (inc,) = ev.incidents
    assert inc.detected
    assert inc.delay_events == 500
    # startsAt (00:06:44) minus first_time (offset 40000 at 100/s = 00:06:40)
    assert inc.delay_seconds == pytest.approx(4.0)
    assert inc.alert is not None
    assert inc.alert.offset == 40_500
    assert inc.alert.labels["feature"] == "credit_score"
    assert ev.detected == 1
    assert ev.missed == 0
    assert ev.records == 3
    assert ev.firing == 2
    assert ev.matching_firing == 2
    assert ev.false_firing == 0
    assert ev.collateral_firing == 0


def test_delay_seconds_falls_back_to_rate() -> None:
    truth = _truth(_incident(40_000, 99_999))
    ev = evaluate([_alert(40_750, starts_at=None)], truth)
    assert ev.incidents[0].delay_seconds == pytest.approx(7.5)
    bad = evaluate([_alert(40_750, starts_at="not a time")], truth)
    assert bad.incidents[0].delay_seconds == pytest.approx(7.5)


def test_first_firing_is_lowest_offset() -> None:
    truth = _truth(_incident(40_000, 99_999))
    ev = evaluate([_alert(45_000), _alert(42_000), _alert(39_000)], truth)
    assert ev.incidents[0].delay_events == 2_000
    assert ev.false_firing == 1  # 39_000 precedes the incident


def test_non_matching_alerts_are_collateral() -> None:
    truth = _truth(_incident(40_000, 99_999))
    alerts = [
        _alert(41_000, feature="amount"),
        _alert(42_000, "LatencyRegression", feature=None),
        _alert(43_000, "FeatureDrift", feature=None),
    ]
    ev = evaluate(alerts, truth)
    assert not ev.incidents[0].detected
    assert ev.incidents[0].delay_events is None
    assert ev.incidents[0].delay_seconds is None
    assert ev.missed == 1
    assert ev.collateral_firing == 3
    assert ev.false_firing == 0
    assert [a.offset for a in ev.collateral_alerts] == [41_000, 42_000, 43_000]


def test_grace_window() -> None:
    truth = _truth(_incident(1_000, 1_999))
    late = evaluate([_alert(2_400)], truth, grace_events=500)
    assert late.incidents[0].detected
    assert late.incidents[0].delay_events == 1_400
    too_late = evaluate([_alert(2_600)], truth, grace_events=500)
    assert not too_late.incidents[0].detected
    assert too_late.false_firing == 1
    edge = evaluate([_alert(2_499)], truth, grace_events=500)
    assert edge.incidents[0].detected
    default = evaluate([_alert(21_999)], truth)
    assert default.incidents[0].detected
    assert evaluate([_alert(22_000)], truth).false_firing == 1


def test_false_firing_rate_per_million() -> None:
    truth = _truth(_incident(40_000, 79_999))
    # window [40_000, 99_999] after a 20_000 grace; 40_000 lines lie outside
    alerts = [_alert(100), _alert(30_000, "DataQuality", feature="amount", check="missing")]
    alerts += [_alert(50_000)]
    ev = evaluate(alerts, truth)
    assert ev.events_outside == 40_000
    assert ev.false_firing == 2
    assert ev.false_firing_per_million == pytest.approx(2 / 40_000 * 1e6)
    assert [a.offset for a in ev.false_alerts] == [100, 30_000]
    small = evaluate(alerts, truth, grace_events=0)
    assert small.events_outside == 60_000
    assert small.false_firing == 2


def test_overlapping_windows_union() -> None:
    truth = _truth(
        _incident(10_000, 19_999),
        _incident(25_000, 29_999, alertname="DataQuality", features=["amount"], checks=["absent"]),
    )
    ev = evaluate([], truth, grace_events=10_000)
    # union of [10_000, 29_999] and [25_000, 39_999] is 30_000 lines
    assert ev.events_outside == LINES - 30_000
    assert ev.false_firing_per_million == 0.0
    assert ev.missed == 2


def test_checks_must_match() -> None:
    truth = _truth(
        _incident(
            40_000,
            99_999,
            alertname="DataQuality",
            features=["account_age_days"],
            checks=["nan_inf", "out_of_range"],
            kind="corrupt-values",
        )
    )
    wrong = _alert(40_010, "DataQuality", feature="account_age_days", check="missing")
    right = _alert(40_020, "DataQuality", feature="account_age_days", check="out_of_range")
    ev = evaluate([wrong, right], truth)
    assert ev.incidents[0].detected
    assert ev.incidents[0].delay_events == 20
    assert ev.incidents[0].alert is not None
    assert ev.incidents[0].alert.labels["check"] == "out_of_range"
    assert ev.collateral_firing == 1
    no_check = evaluate([_alert(40_030, "DataQuality", feature="account_age_days")], truth)
    assert not no_check.incidents[0].detected


def test_empty_features_and_checks_match_any() -> None:
    truth = _truth(
        _incident(
            40_000, 99_999, alertname="LatencyRegression", features=[], kind="latency-regression"
        )
    )
    ev = evaluate([_alert(40_100, "LatencyRegression", feature=None)], truth)
    assert ev.incidents[0].detected
    ev2 = evaluate([_alert(40_100, "LatencyRegression", feature="whatever")], truth)
    assert ev2.incidents[0].detected


def test_schema_change_pairs() -> None:
    truth = _truth(
        _incident(50_000, 99_999, alertname="DataQuality", features=["amount"], checks=["absent"]),
        _incident(
            50_000,
            99_999,
            alertname="DataQuality",
            features=["amount_usd"],
            checks=["unexpected_feature"],
        ),
    )
    alerts = [
        _alert(50_001, "DataQuality", feature="amount_usd", check="unexpected_feature"),
        _alert(50_005, "DataQuality", feature="amount", check="missing"),
    ]
    ev = evaluate(alerts, truth)
    assert [i.detected for i in ev.incidents] == [False, True]
    assert ev.missed == 1
    assert ev.matching_firing == 1
    assert ev.collateral_firing == 1


def test_steady_truth() -> None:
    truth = _truth()
    ev = evaluate([_alert(10), _alert(20, state="resolved"), _alert(99_000)], truth)
    assert ev.incidents == ()
    assert ev.detected == ev.missed == 0
    assert ev.false_firing == 2
    assert ev.events_outside == LINES
    assert ev.false_firing_per_million == pytest.approx(20.0)
    assert ev.mean_delay_events is None
    quiet = evaluate([], truth)
    assert quiet.false_firing_per_million == 0.0
    assert "no incidents" in format_evaluation(quiet)


def test_no_lines_outside() -> None:
    truth = _truth(_incident(0, 999), lines=1_000)
    ev = evaluate([_alert(5)], truth)
    assert ev.events_outside == 0
    assert ev.false_firing_per_million is None
    assert "-" in format_evaluation(ev)


def test_to_dict_is_json() -> None:
    truth = _truth(_incident(40_000, 99_999))
    ev = evaluate([_alert(40_500), _alert(10)], truth)
    data = ev.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["detected"] == 1
    assert data["missed"] == 0
    assert data["false_firing"] == 1
    assert data["incidents"][0]["features"] == ["credit_score"]
    assert data["incidents"][0]["alert"]["offset"] == 40_500
    assert data["mean_delay_events"] == 500
    with pytest.raises(AttributeError):
        ev.lines = 3  # type: ignore[misc]


def test_format_is_aligned() -> None:
    truth = _truth(
        _incident(40_000, 59_999),
        _incident(60_000, 99_999, alertname="LatencyRegression", features=[], kind="latency"),
    )
    ev = evaluate([_alert(40_500), _alert(10, "DataQuality", feature="x", check="missing")], truth)
    text = format_evaluation(ev)
    lines = text.splitlines()
    header = next(k for k, line in enumerate(lines) if line.startswith("kind"))
    rows = lines[header : header + 4]
    col = rows[0].index("detected")
    assert all(len(r) > col for r in rows)
    assert rows[2][col:].startswith("yes")
    assert rows[3][col:].startswith("MISSED")
    assert "false firing: 1" in text
    assert "DataQuality feature=x check=missing" in text


def test_evaluate_files(tmp_path: Path) -> None:
    truth = _truth(_incident(40_000, 99_999))
    alerts_path = tmp_path / "alerts.jsonl"
    truth_path = tmp_path / "truth.json"
    alerts_path.write_bytes(
        b"\n".join(orjson.dumps(a) for a in [_alert(40_200), _alert(5)]) + b"\n\n"
    )
    truth_path.write_bytes(orjson.dumps(truth))
    ev = evaluate_files(alerts_path, truth_path)
    assert isinstance(ev, Evaluation)
    assert ev.incidents[0].delay_events == 200
    assert ev.false_firing == 1
    alerts_path.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"alerts\.jsonl:1"):
        evaluate_files(alerts_path, truth_path)


def test_invalid_inputs() -> None:
    truth = _truth(_incident(40_000, 99_999))
    with pytest.raises(ValueError, match="grace_events"):
        evaluate([], truth, grace_events=-1)
    rec = _alert(40_000)
    del rec["offset"]
    with pytest.raises(ValueError, match="offset"):
        evaluate([rec], truth)
    with pytest.raises(ValueError, match="last_offset"):
        evaluate([], _truth(_incident(10, 5)))


def test_with_simulated_flapping_truth() -> None:
    truth = generate("flapping", 30_000, 4, onset=0.2).truth()
    incs = truth["incidents"]
    assert len(incs) == 3
    alerts = [_alert(inc["first_offset"] + 700, starts_at=None) for inc in incs]
    alerts.append(_alert(1_000))  # before the onset: false
    ev = evaluate(alerts, truth, grace_events=2_000)
    assert [i.detected for i in ev.incidents] == [True, True, True]
    assert [i.delay_events for i in ev.incidents] == [700, 700, 700]
    assert all(i.delay_seconds == pytest.approx(7.0) for i in ev.incidents)
    assert ev.false_firing == 1
    assert ev.events_outside == 30_000 - 3 * 6_000
