"""The scenario generator :mod:`monitor.scenarios.simulate`: determinism, the line format,
the truth document's offsets, the label layout, laziness, validation, and ``simulate --to``.

Statistical assertions use 5-sigma bounds derived from the sample (see ``streams.py``).
"""

from __future__ import annotations

import inspect
import json
import math
import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.scenarios import simulate
from monitor.scenarios.simulate import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    SCENARIOS,
    generate,
)
from tests.scenarios.streams import (
    ONSET_EVENT,
    SEED,
    N,
    scenario_events,
    scenario_lines,
    scenario_predictions,
    scenario_truth,
)


def test_scenarios_listed() -> None:
    assert SCENARIOS == (
        "steady",
        "abrupt-shift",
        "gradual-drift",
        "variance-change",
        "category-shift",
        "missing-spike",
        "corrupt-values",
        "schema-change",
        "latency-regression",
        "accuracy-drop",
        "flapping",
    )
    assert len(NUMERIC_FEATURES) == 20
    assert len(CATEGORICAL_FEATURES) == 5


def test_deterministic_bytes() -> None:
    a = b"\n".join(generate("accuracy-drop", 15_000, 5).lines())
    b = b"\n".join(generate("accuracy-drop", 15_000, 5).lines())
    c = b"\n".join(generate("accuracy-drop", 15_000, 6).lines())
    assert a == b
    assert a != c


def test_lines_reiterable() -> None:
    sim = generate("flapping", 12_000, 2)
    assert list(sim.lines()) == list(sim.lines())


def test_write_matches_lines(tmp_path: Path) -> None:
    sim = generate("schema-change", 12_345, 3, rate=250.0)
    truth = sim.write(tmp_path / "events.jsonl", tmp_path / "truth.json")
    data = (tmp_path / "events.jsonl").read_bytes()
    assert data == b"\n".join(sim.lines()) + b"\n"
    assert json.loads((tmp_path / "truth.json").read_text()) == truth == sim.truth()
    assert data.count(b"\n") == truth["lines"] == 12_345


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_line_parses(scenario: str) -> None:
    seen_constants: list[str] = []

    def constant(name: str) -> float:
        seen_constants.append(name)
        return float(name)

    for line in scenario_lines(scenario):
        assert not line.endswith(b"\n")
        obj = json.loads(line, parse_constant=constant)
        assert isinstance(obj, dict)
        if b"NaN" not in line:
            # byte-identical to orjson's own encoding of the parsed object
            assert orjson.dumps(orjson.loads(line)) == line
    if scenario == "corrupt-values":
        assert set(seen_constants) == {"NaN"}
    else:
        assert seen_constants == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_counts_and_truth_header(scenario: str) -> None:
    lines = scenario_lines(scenario)
    truth = scenario_truth(scenario)
    preds = scenario_predictions(scenario)
    assert len(preds) == N == truth["events"]
    assert truth["lines"] == len(lines)
    labels = [o for o in scenario_events(scenario) if "prediction" not in o]
    if scenario == "accuracy-drop":
        assert len(labels) == N
        assert len(lines) == 2 * N
    else:
        assert labels == []
        assert len(lines) == N
    assert truth["scenario"] == scenario
    assert truth["seed"] == SEED
    assert truth["rate"] == 100.0
    assert truth["model"] == "fraud"
    assert truth["model_version"] == "v1"
    assert truth["features"] == {
        "numeric": list(NUMERIC_FEATURES),
        "categorical": list(CATEGORICAL_FEATURES),
    }
    assert [o["event_id"] for o in preds] == [f"e-{i}" for i in range(N)]
    stamps = [o["timestamp"] for o in scenario_events(scenario)]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "steady"])
def test_truth_offsets_point_at_lines(scenario: str) -> None:
    truth = scenario_truth(scenario)
    objs = scenario_events(scenario)
    assert truth["incidents"]
    for inc in truth["incidents"]:
        assert inc["kind"] == scenario
        first, last = inc["first_offset"], inc["last_offset"]
        assert 0 <= first <= last < truth["lines"]
        assert objs[first]["timestamp"] == inc["first_time"]
        assert objs[last]["timestamp"] == inc["last_time"]
        if scenario == "accuracy-drop":
            continue
        # period incidents: the first line is the onset prediction (or a flapping on-period)
        first_event = int(objs[first]["event_id"][2:])
        assert first == first_event
        if scenario != "flapping":
            assert first_event == ONSET_EVENT
            assert last == truth["lines"] - 1


def test_truth_available_before_lines() -> None:
    sim = generate("accuracy-drop", 23_456, 9, onset=0.3)
    early = sim.truth()
    lines = list(sim.lines())
    assert early == sim.truth()
    assert early["lines"] == len(lines)
    inc = early["incidents"][0]
    objs = [orjson.loads(line) for line in lines]
    onset = math.floor(0.3 * 23_456)
    post = [k for k, o in enumerate(objs) if "label" in o and int(o["event_id"][2:]) >= onset]
    assert inc["first_offset"] == post[0]
    assert inc["last_offset"] == post[-1] == len(lines) - 1
    onset_line = inc["params"]["onset_prediction_offset"]
    assert objs[onset_line]["event_id"] == f"e-{onset}"
    assert "prediction" in objs[onset_line]


def test_timestamps_and_ids() -> None:
    sim = generate("steady", 2_000, 1, rate=3.0)
    objs = [orjson.loads(line) for line in sim.lines()]
    pattern = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    start = np.datetime64("2026-01-01T00:00:00.000", "ms")
    for i, obj in enumerate(objs):
        assert obj["event_id"] == f"e-{i}"
        assert pattern.match(obj["timestamp"])
        ms = math.floor(i * 1000 / 3.0)
        expected = np.datetime_as_string(start + np.timedelta64(ms, "ms"), unit="ms")
        assert obj["timestamp"] == f"{expected}Z"
    assert objs[0]["timestamp"] == "2026-01-01T00:00:00.000Z"
    assert objs[3]["timestamp"] == "2026-01-01T00:00:01.000Z"


def test_model_name_escaping() -> None:
    line = next(generate("steady", 10, 1, model='fr"a%ud', model_version="v%d").lines())
    obj = json.loads(line)
    assert obj["model"] == 'fr"a%ud'
    assert obj["model_version"] == "v%d"


@settings(max_examples=25, deadline=None)
@given(
    events=st.integers(min_value=1, max_value=700),
    onset=st.floats(min_value=0.01, max_value=0.99),
    chunk=st.integers(min_value=1, max_value=97),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_label_layout_any_chunking(events: int, onset: float, chunk: int, seed: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(simulate, "CHUNK_EVENTS", chunk)
        sim = generate("accuracy-drop", events, seed, onset=onset)
        truth = sim.truth()
        objs = [orjson.loads(line) for line in sim.lines()]
    assert len(objs) == truth["lines"] == 2 * events
    onset_event = math.floor(onset * events)
    preds = [int(o["event_id"][2:]) for o in objs if "prediction" in o]
    labels = [int(o["event_id"][2:]) for o in objs if "label" in o]
    assert preds == list(range(events))
    assert sorted(labels) == list(range(events))
    seen: set[int] = set()
    for obj in objs:
        i = int(obj["event_id"][2:])
        if "prediction" in obj:
            seen.add(i)
        else:
            assert i in seen  # a label never precedes its prediction
    post = [k for k, o in enumerate(objs) if "label" in o and int(o["event_id"][2:]) >= onset_event]
    inc = truth["incidents"][0]
    assert (inc["first_offset"], inc["last_offset"]) == (post[0], post[-1])


def test_lines_is_lazy_generator() -> None:
    sim = generate("accuracy-drop", 5_000_000, 1)
    assert inspect.isgenerator(sim.lines())
    it = sim.lines()
    t0 = time.perf_counter()
    first = next(it)
    assert time.perf_counter() - t0 < 2.0
    assert orjson.loads(first)["event_id"] == "e-0"


def test_memory_flat() -> None:
    sim = generate("steady", 5_000_000, 1)
    tracemalloc.start()
    try:
        for count, _line in enumerate(sim.lines(), start=1):
            if count == 3 * simulate.CHUNK_EVENTS:
                break
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a few chunks' worth of lines (~0.8 kB each), nowhere near the 4 GB of the whole file
    assert peak < 40 * simulate.CHUNK_EVENTS * 1_000


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"scenario": "nope"}, "scenario"),
        ({"events": 0}, "events"),
        ({"events": -5}, "events"),
        ({"events": 2.5}, "events"),
        ({"rate": 0.0}, "rate"),
        ({"rate": -1.0}, "rate"),
        ({"rate": float("inf")}, "rate"),
        ({"onset": 0.0}, "onset"),
        ({"onset": 1.0}, "onset"),
        ({"onset": 1.5}, "onset"),
        ({"onset": float("nan")}, "onset"),
        ({"seed": -1}, "seed"),
    ],
)
def test_value_errors_name_parameter(kwargs: dict[str, Any], param: str) -> None:
    args: dict[str, Any] = {"scenario": "steady", "events": 100, "seed": 1, **kwargs}
    with pytest.raises(ValueError, match=rf"^{param}\b"):
        generate(**args)


def test_simulate_to_sends_labels_to_the_configured_topic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``simulate --to`` takes the labels (and features) topic from ``--config``, not a
    hard-coded ``labels``."""
    import monitor.scenarios.publish
    from monitor.cli import main

    calls: list[dict[str, Any]] = []

    def publish(sim: Any, url: str, batch: int, **kwargs: Any) -> int:
        calls.append({"url": url, "batch": batch, **kwargs})
        return 0

    monkeypatch.setattr(monitor.scenarios.publish, "publish", publish)
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("topics:\n  labels: truth-x\n  features: feats-x\n", encoding="utf-8")
    args = ["simulate", "--scenario", "accuracy-drop", "--events", "200"]
    url = "kafka://127.0.0.1:9/preds"
    assert main([*args, "--to", url, "--config", str(cfg)]) == 0
    assert main([*args, "--to", url]) == 0
    assert [(c["labels_topic"], c["features_topic"]) for c in calls] == [
        ("truth-x", "feats-x"),
        ("labels", "features"),
    ]


@pytest.mark.kafka
def test_simulate_to_writes_labels_to_topics_labels(kafka_broker: Any, tmp_path: Path) -> None:
    from kafka import KafkaConsumer

    from monitor.cli import main
    from tests.kafka_broker import create_topic

    tag = f"{time.time_ns() % 10**9}"
    preds, labels = f"simcfg-pred-{tag}", f"simcfg-truth-{tag}"
    for topic in (preds, labels):
        create_topic(kafka_broker.bootstrap, topic, 1)
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"topics:\n  labels: {labels}\n", encoding="utf-8")
    url = f"kafka://{kafka_broker.bootstrap}/{preds}"
    argv = ["simulate", "--scenario", "accuracy-drop", "--events", "3000", "--seed", "5"]
    assert main([*argv, "--to", url, "--config", str(cfg)]) == 0
    consumer = KafkaConsumer(
        labels,
        bootstrap_servers=kafka_broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        group_id=None,
    )
    try:
        got = [r.value for r in consumer]
    finally:
        consumer.close()
    events = [e for raw in got for e in orjson.loads(raw)["events"]]
    assert events and all("label" in e and "prediction" not in e for e in events)
