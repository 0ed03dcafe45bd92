"""The oracle notices each way a fast path can break its contract (so that a clean fuzz run
means something), and the JSON mutator makes bounded, reproducible inputs."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from monitor.events import Reason, Rejection
from monitor.fastdecode import FastPrediction, decode_prediction
from tests.fuzz import replay
from tests.fuzz.__main__ import kind_of
from tests.fuzz.mutate import json_mutator
from tests.fuzz.oracle import GOOD, Oracle, difference, json_features

T = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fast", "slow", "same"),
    [
        (0.0, 0.0, True),
        (-0.0, 0.0, False),  # to the bit
        (1.0, 1, False),  # a float is not an int
        (True, 1.0, False),
        (None, float("nan"), False),  # a NaN token is never a null
        ({"a": 1.0}, {"a": 1.0, "b": None}, False),
        (T, T + timedelta(microseconds=1), True),  # msgspec rounds, pydantic cuts
        (T, T + timedelta(microseconds=2), False),
        (T, T.replace(tzinfo=timezone(timedelta(hours=1))) + timedelta(hours=1), False),
        (T, T.replace(tzinfo=None), False),
    ],
)
def test_difference_is_strict_where_the_contract_is(fast: Any, slow: Any, same: bool) -> None:
    assert (difference(fast, slow) is None) is same


def test_json_features_are_what_the_schema_makes_of_json() -> None:
    (got,) = json_features(b'{"features": {"a": -0, "b": 1' + b"0" * 5000 + b', "c": -0.0}}')
    assert struct.pack("<d", got["a"]) == struct.pack("<d", 0.0)
    assert got["b"] == float("inf") and struct.pack("<d", got["c"]) == struct.pack("<d", -0.0)
    assert json_features(b'{"events": [{"features": {}}, 7]}') == [{}, None]


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    return Oracle()


def _with_path(oracle: Oracle, decode: Any, raw: bytes) -> list[str]:
    saved = oracle.singles
    oracle.singles = [("planted", decode)]
    try:
        return [p for p in oracle.check(raw, pipeline=False) if p.startswith("planted")]
    finally:
        oracle.singles = saved


def _tampered(raw: bytes) -> FastPrediction | None:
    ev = decode_prediction(GOOD)
    assert ev is not None and isinstance(ev.features, dict)
    amount = ev.features["amount"]
    assert isinstance(amount, float)
    ev.features["amount"] = amount * 2 or -0.0
    return ev


def _raises(raw: bytes) -> FastPrediction | None:
    raise RecursionError("planted")


def _takes_anything(raw: bytes) -> FastPrediction | None:
    return decode_prediction(GOOD)


def _rejects_everything(raw: bytes) -> Any:
    return Rejection(Reason.INVALID_VALUE, "planted", 0)


def test_a_valid_line_passes_every_path(oracle: Oracle) -> None:
    assert oracle.check(GOOD) == []


@pytest.mark.parametrize(
    ("decode", "raw", "says"),
    [
        (_tampered, GOOD, "differs from pydantic at event.features.amount"),
        (_raises, GOOD, "raised RecursionError"),
        (_takes_anything, b"{}", "pydantic rejects"),
        (_rejects_everything, GOOD, "what pydantic accepts"),
    ],
)
def test_a_planted_defect_is_reported(oracle: Oracle, decode: Any, raw: bytes, says: str) -> None:
    problems = _with_path(oracle, decode, raw)
    assert problems and says in problems[0], problems


def test_the_pipeline_must_reject_what_pydantic_rejects(oracle: Oracle) -> None:
    too_large = GOOD[:-1] + b" " * 3000 + b"}"
    problems = [p for p in oracle.check(too_large) if p.startswith("pipeline")]
    assert all("too_large" in p for p in problems)
    assert oracle.check(b"{") == []  # malformed: pydantic and the pipeline agree


def test_kinds_of_problems_leave_out_paths_and_numbers() -> None:
    a = kind_of("wrapped general.message accepts, event 0: pydantic rejects (wrong_type: x)")
    b = kind_of("xc,sim.envelope accepts, event 3: pydantic rejects (wrong_type: y)")
    assert a == b == "accepts, event N: pydantic rejects :wrong_type"


def test_the_json_mutator_is_reproducible_and_bounded() -> None:
    def byte_mutation(data: bytes, max_size: int) -> bytes:
        return data[:max_size]

    mutate = json_mutator(byte_mutation)
    outs = [mutate(GOOD, 4096, seed) for seed in range(200)]
    assert outs == [mutate(GOOD, 4096, seed) for seed in range(200)]
    assert all(len(out) <= 4096 for out in outs)
    changed = [out for out in outs if out != GOOD]
    assert len(changed) > 50
    assert any(b'"events"' in out for out in changed) and any(b"[[[[" in out for out in changed)
    assert all(isinstance(json.loads(out), dict | list) for out in changed if b"[[[[" not in out)


def test_replay_checks_the_corpus_and_mutations_then_stops_at_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver of the sanitized run (the oracle is planted: this is about the loop)."""
    monkeypatch.delenv("FUZZ_EXT_DIR", raising=False)
    monkeypatch.setenv("FUZZ_SEED", "3")
    seen: list[bytes] = []

    def planted(self: Oracle, raw: bytes, pipeline: bool = True) -> list[str]:
        seen.append(raw)
        return ["planted"] if b"PLANTED" in raw else []

    monkeypatch.setattr(Oracle, "check", planted)
    corpus, artifacts = tmp_path / "corpus", tmp_path / "artifacts"
    corpus.mkdir()
    (corpus / "good").write_bytes(GOOD)
    assert replay.main(["0.3", str(artifacts), str(corpus)]) == 0
    assert seen[0] == GOOD and len(set(seen)) > 10  # the corpus, then mutations of it
    assert not (artifacts / "last-input").exists() and not list(artifacts.glob("crash-*"))
    (corpus / "planted").write_bytes(b'{"PLANTED": 1}')
    assert replay.main(["10", str(artifacts), str(corpus)]) == 1
    (crash,) = artifacts.glob("crash-*")
    assert crash.read_bytes() == b'{"PLANTED": 1}'
