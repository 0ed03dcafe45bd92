"""The fuzz corpus through the oracle, with the normal build: every seed, every reproducer of
issue 14 and every input the fuzzer found (kept as regression cases) keeps the contract of
:mod:`monitor.fastdecode` (see :mod:`tests.fuzz.oracle`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.events import Rejection, parse_event
from tests.accel_impls import Impl
from tests.fuzz.make_corpus import CORPUS, reproducers, seeds
from tests.fuzz.oracle import Oracle

FILES = sorted(p for p in CORPUS.iterdir() if p.is_file())

#: Reproducers whose defect is a wrong reason rather than a broken contract: pydantic's reason.
REASONS = {
    "d7-nan-score": "non_finite",  # README: NaN/Infinity in a prediction object
    "d7-infinity-probability": "non_finite",
}


# Every test runs on the C extension and on its pure-Python twin (tests/accel_impls.py).
pytestmark = pytest.mark.usefixtures("accel")


@pytest.fixture(scope="module")
def oracle(accel: Impl) -> Oracle:
    """The oracle's decoders, compiled on the implementation in use."""
    return Oracle()


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_input_keeps_the_contract(oracle: Oracle, path: Path) -> None:
    problems = oracle.check(path.read_bytes())
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("name", sorted(REASONS))
def test_reproducer_is_rejected_for_its_reason(name: str) -> None:
    got = parse_event((CORPUS / name).read_bytes())
    assert isinstance(got, Rejection) and got.reason.value == REASONS[name], got


def test_the_corpus_holds_what_make_corpus_writes() -> None:
    """The committed seeds and reproducers are those the script makes (regenerate with
    ``python -m tests.fuzz.make_corpus``), and the corpus stays small."""
    for name, data in {**seeds(), **reproducers()}.items():
        assert (CORPUS / name).read_bytes() == data, name
    assert sum(p.stat().st_size for p in FILES) < 256 * 1024
