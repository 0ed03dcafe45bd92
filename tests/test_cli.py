"""The command line end to end: simulate, reference build, replay with a reference, evaluate."""

from __future__ import annotations

import json
import socket
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


def test_replay_serve_on_a_taken_address_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text("")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        args = ["replay", str(events), "--no-progress", "--serve", "--metrics-listen", listen]
        assert main(args) == 2
    err = capsys.readouterr().err
    assert f"metrics.listen: replay --serve has no server on {listen}" in err
    assert "None/" not in err


def test_simulate_start_now_stamps_the_last_event_about_now(tmp_path: Path) -> None:
    """``--start now`` (the default with ``--to``): a published stream is within the worker's
    ``events.max_age``, which would refuse a stream stamped on 2026-01-01 as clock skew."""
    from datetime import UTC, datetime

    out = tmp_path / "events.jsonl"
    before = datetime.now(UTC).timestamp()
    args = ["simulate", "--scenario", "steady", "--events", "200", "--rate", "10", "--out"]
    assert main([*args, str(out), "--start", "now"]) == 0
    after = datetime.now(UTC).timestamp()
    stamps = [
        datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
        for line in out.read_text().splitlines()
        if '"prediction"' in line
    ]
    assert len(stamps) == 200
    # 200 events at 10/s span 19.9 s; the first is stamped 20 s before the call.
    assert before - 20.0 - 0.001 <= stamps[0] <= after - 20.0 + 0.001
    assert stamps[-1] - stamps[0] == pytest.approx(19.9, abs=0.001)
    assert main([*args, str(out), "--start", "2030-05-06T07:08:09Z"]) == 0
    first = json.loads(out.read_text().splitlines()[0])["timestamp"]
    assert first == "2030-05-06T07:08:09.000Z"
    assert main([*args, str(out), "--start", "yesterday"]) == 2
