"""Replay decides byte-identical alert records: a stored digest per stream guards every change.

Each stream is written by ``driftwatch simulate`` and replayed by ``driftwatch replay --alerts``
(the command line in process, so the test follows whatever path the commands take); the alert
records it writes (every state change: state, alertname, labels, annotations, startsAt, endsAt,
offset, fingerprint) are serialized canonically (sorted-keys JSON) and hashed with sha256. The
streams are every ``simulate`` scenario and the streams of ``tests/test_scenarios.py`` (the
million-event steady stream is represented by the 40,000-event one: replaying a million events
takes minutes). The expected digests are in ``tests/data/alert_digests.json``. Every stream
is replayed with the C accelerator and with its pure-Python twin (``tests/accel_impls.py``):
both must decide the stored records.

Regenerating the digests (``DRIFTWATCH_UPDATE_DIGESTS=1 pytest tests/test_alert_digest.py``)
is allowed ONLY in a change that is MEANT to change alert decisions, with the reason in its
commit message. A restructure, a speed-up or a new accelerator must pass unchanged: a
different digest there is a changed decision, a bug.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.cli import main

DIGESTS = Path(__file__).parent / "data" / "alert_digests.json"
UPDATE = os.environ.get("DRIFTWATCH_UPDATE_DIGESTS") == "1"
NOTE = (
    "sha256 of the sorted-keys JSON of the alert records `driftwatch replay --alerts` writes "
    "for each stream of tests/test_alert_digest.py. Regenerate (DRIFTWATCH_UPDATE_DIGESTS=1) "
    "ONLY in a change that is meant to change alert decisions, and say why in its commit."
)

pytestmark = pytest.mark.usefixtures("accel")

#: FeatureDrift with a short ``for``: test_scenarios' flapping stream that fires.
SHORT_FOR = "alerts:\n  FeatureDrift:\n    for: 10s\n    keep_firing_for: 0s\n"


@dataclass(frozen=True)
class Stream:
    """One replayed stream: what ``simulate`` writes, the settings and what must be decided."""

    scenario: str
    events: int = 40_000
    seed: int = 7
    config: str | None = None
    #: (alertname, state) pairs the records must hold, so a digest is never of nothing.
    expect: frozenset[tuple[str, str]] = frozenset()


def _fires(*names: str) -> frozenset[tuple[str, str]]:
    return frozenset((n, s) for n in names for s in ("pending", "firing"))


# Every simulate scenario at test_scenarios' size and seed (its `run(scenario)` streams).
STREAMS: dict[str, Stream] = {
    "steady": Stream("steady"),
    "abrupt-shift": Stream("abrupt-shift", expect=_fires("FeatureDrift")),
    "gradual-drift": Stream("gradual-drift", expect=_fires("FeatureDrift")),
    "variance-change": Stream("variance-change", expect=_fires("FeatureDrift")),
    "category-shift": Stream("category-shift", expect=_fires("FeatureDrift")),
    "missing-spike": Stream("missing-spike", expect=_fires("DataQuality")),
    "corrupt-values": Stream("corrupt-values", expect=_fires("DataQuality")),
    "schema-change": Stream("schema-change", expect=_fires("DataQuality")),
    "latency-regression": Stream("latency-regression", expect=_fires("LatencyRegression")),
    "accuracy-drop": Stream("accuracy-drop", expect=_fires("PerformanceDegradation")),
    "flapping": Stream(
        "flapping", expect=frozenset({("FeatureDrift", "pending"), ("FeatureDrift", "transient")})
    ),
    # The other streams of tests/test_scenarios.py.
    "flapping-short-for": Stream(
        "flapping",
        config=SHORT_FOR,
        expect=_fires("FeatureDrift") | {("FeatureDrift", "resolved")},
    ),
    "abrupt-shift-60k-seed-11": Stream(
        "abrupt-shift", events=60_000, seed=11, expect=_fires("FeatureDrift")
    ),
    "abrupt-shift-30k": Stream("abrupt-shift", events=30_000, expect=_fires("FeatureDrift")),
}


def digest(records: list[dict[str, Any]]) -> str:
    """sha256 of the records as canonical JSON (sorted keys, no whitespace, UTF-8)."""
    text = json.dumps(records, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def summary(records: list[dict[str, Any]]) -> dict[str, int]:
    """Records per ``alertname/state``: stored beside the digest to show what changed."""
    counts = Counter(f"{r['alertname']}/{r['state']}" for r in records)
    return dict(sorted(counts.items()))


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every stream's events file, written once by ``driftwatch simulate``."""
    folder = tmp_path_factory.mktemp("digest-streams")
    written: dict[tuple[str, int, int], Path] = {}
    paths: dict[str, Path] = {}
    for name, s in STREAMS.items():
        key = (s.scenario, s.events, s.seed)
        if key not in written:
            path = folder / f"{s.scenario}-{s.events}-{s.seed}.jsonl"
            argv = ["simulate", "--scenario", s.scenario, "--events", str(s.events)]
            assert main([*argv, "--seed", str(s.seed), "--out", str(path)]) == 0
            written[key] = path
        paths[name] = written[key]
    return paths


def replay_records(events: Path, config: str | None, folder: Path) -> list[dict[str, Any]]:
    """The alert records ``driftwatch replay`` writes for ``events``."""
    alerts = folder / "alerts.jsonl"
    argv = ["replay", str(events), "--alerts", str(alerts), "--no-progress"]
    if config is not None:
        settings = folder / "monitor.yaml"
        settings.write_text(config)
        argv += ["--config", str(settings)]
    assert main(argv) == 0
    return [orjson.loads(line) for line in alerts.read_bytes().splitlines()]


_updated: set[str] = set()


def _stored() -> dict[str, Any]:
    if DIGESTS.exists():
        data: dict[str, Any] = json.loads(DIGESTS.read_text())
        return data
    return {"note": NOTE, "streams": {}}


def _update(name: str, records: list[dict[str, Any]]) -> None:
    data = _stored()
    data["note"] = NOTE
    data["streams"][name] = {"sha256": digest(records), "records": summary(records)}
    data["streams"] = dict(sorted(data["streams"].items()))
    DIGESTS.parent.mkdir(exist_ok=True)
    DIGESTS.write_text(json.dumps(data, indent=2) + "\n")


@pytest.mark.parametrize("name", list(STREAMS))
def test_replay_decides_the_stored_alert_records(
    name: str,
    streams: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = STREAMS[name]
    records = replay_records(streams[name], stream.config, tmp_path)
    capsys.readouterr()  # the replay summary
    decided = {(r["alertname"], r["state"]) for r in records}
    if stream.expect:
        assert stream.expect <= decided, (name, summary(records))
    else:
        assert records == [], (name, summary(records))  # a steady stream decides nothing
    if UPDATE and name not in _updated:
        # Written once per run (by the first implementation); the other one compares.
        _update(name, records)
        _updated.add(name)
    expected = _stored()["streams"].get(name)
    assert expected is not None, f"no stored digest for {name}: see this module's docstring"
    assert (digest(records), summary(records)) == (expected["sha256"], expected["records"]), (
        f"{name}: replay decided other alert records than stored"
    )
