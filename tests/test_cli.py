"""The command line end to end: simulate, reference build, replay with a reference, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.references import load_references


def test_simulate_replay_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    truth = tmp_path / "truth.json"
    alerts = tmp_path / "alerts.jsonl"
    assert (
        main(
            [
                "simulate",
                "--scenario",
                "missing-spike",
                "--events",
                "20000",
                "--seed",
                "4",
                "--out",
                str(events),
                "--truth",
                str(truth),
            ]
        )
        == 0
    )
    assert events.read_bytes().count(b"\n") == 20_000
    assert main(["replay", str(events), "--alerts", str(alerts), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "lines read          20,000" in out
    assert "DataQuality" in out
    records = [json.loads(x) for x in alerts.read_text().splitlines()]
    assert {r["state"] for r in records} >= {"pending", "firing"}
    for r in records:
        assert set(r) == {
            "state",
            "alertname",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "offset",
            "fingerprint",
        }
        assert r["startsAt"].endswith("Z")
    firing = [r for r in records if r["state"] == "firing"]
    assert firing[0]["labels"]["check"] == "missing"
    assert main(["evaluate", "--alerts", str(alerts), "--truth", str(truth)]) == 0
    report = capsys.readouterr().out
    assert "detected: 1/1" in report


def test_reference_build_then_replay_uses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref_events = tmp_path / "ref.jsonl"
    live = tmp_path / "live.jsonl"
    ref = tmp_path / "ref.json"
    alerts = tmp_path / "alerts.jsonl"
    assert (
        main(
            [
                "simulate",
                "--scenario",
                "steady",
                "--events",
                "8000",
                "--seed",
                "1",
                "--out",
                str(ref_events),
            ]
        )
        == 0
    )
    assert main(["reference", "build", str(ref_events), "--out", str(ref)]) == 0
    out = capsys.readouterr().out
    profiles = load_references(ref)
    (profile,) = profiles.values()
    assert profile.events == 8000
    assert profile.source == "ref.jsonl"
    assert profile.id in out
    # With a reference there is no warm-up: a shift from the very start is caught.
    assert (
        main(
            [
                "simulate",
                "--scenario",
                "abrupt-shift",
                "--events",
                "12000",
                "--seed",
                "2",
                "--onset",
                "0.1",
                "--out",
                str(live),
            ]
        )
        == 0
    )
    assert (
        main(
            ["replay", str(live), "--reference", str(ref), "--alerts", str(alerts), "--no-progress"]
        )
        == 0
    )
    records = [json.loads(x) for x in alerts.read_text().splitlines()]
    firing = [r for r in records if r["state"] == "firing"]
    assert [r["labels"]["feature"] for r in firing] == ["credit_score"]
    assert firing[0]["annotations"]["reference_id"] == profile.id
    assert firing[0]["offset"] < 1200 + 8000


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "missing.jsonl"), "--no-progress"]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad_ref = tmp_path / "ref.json"
    bad_ref.write_text('{"profiles": [{"model": 1}]}')
    events = tmp_path / "e.jsonl"
    events.write_text("")
    assert main(["replay", str(events), "--reference", str(bad_ref), "--no-progress"]) == 2
    assert "ref.json: profiles[0]: invalid reference profile" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "--scenario", "nope", "--events", "1", "--out", "x"])
