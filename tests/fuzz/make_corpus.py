"""``python -m tests.fuzz.make_corpus``: write the seed corpus ``tests/fuzz/corpus/``.

Seeds are lines of ``driftwatch simulate`` (every scenario's kinds of event: plain, nulls,
``NaN`` tokens, a new category, a changed schema, labels) and envelopes of them as the client
sends them, plus the reproducers of issue 14 (``d<defect>-...``). Files already in the corpus
that this script does not write (inputs the fuzzer found, kept as regression cases) are left as
they are. The output is the same on every run (fixed seeds).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from monitor.cli import main as driftwatch

CORPUS = Path(__file__).with_name("corpus")

SCENARIOS = ["steady", "corrupt-values", "missing-spike", "category-shift", "schema-change"]

_HEAD = b'{"event_id":"e","model":"m","model_version":"v","timestamp":0,'
_EVIL = _HEAD + b'"features":{"x":666,"c":"EVIL"},"prediction":1}'
_GOOD = _HEAD + b'"features":{"x":1,"c":"DE"},"prediction":1}'


def reproducers() -> dict[str, bytes]:
    """The inputs of issue 14's defects 1, 2, 3 and 7 (schema: numeric ``x``, categorical
    ``c``, as the oracle's ``XC_SCHEMA``; the simulator's schema for the size limit)."""
    big = 3000  # over the oracle pipeline's events.max_bytes (2048): the 10 MB, scaled
    sim = _simulated("steady", 5, 14)[0]
    return {
        # 1: RecursionError from msgspec once a schema is compiled.
        "d1-deep-nesting": _HEAD
        + b'"features":{"x":'
        + b"[" * 1000
        + b"]" * 1000
        + b',"c":"DE"},"prediction":1}',
        # 1: pydantic's ValidationError from _fixed(), with or without a compiled schema.
        "d1-timestamp-after-9999": b'{"event_id":"e","model":"m","model_version":"v",'
        b'"timestamp":253402300800000,"features":{},"prediction":1}',
        "d1-timestamp-after-9999-envelope": b'{"events":[{"event_id":"e","model":"m",'
        b'"model_version":"v","timestamp":253402300800000,"features":{},"prediction":1}]}',
        # 2: the visible event takes the hidden features of a duplicate "events" key.
        "d2-duplicate-events-key": b'{"events":['
        + _EVIL
        + b'],"events":['
        + _HEAD
        + b'"features":0,"prediction":1}]}',
        # 2: a features object in prediction.probabilities, a row number in the next event.
        "d2-features-in-probabilities": b'{"events":['
        + _HEAD
        + b'"features":{"x":1,"c":"DE"},"prediction":{"score":0.5,'
        b'"probabilities":{"features":{"x":666,"c":"EVIL"}}}},'
        + _HEAD
        + b'"features":1,"prediction":1}]}',
        # 2: features twice in one event, the last one (which pydantic keeps) invalid.
        "d2-duplicate-features-last-invalid": b'{"events":['
        + _HEAD
        + b'"features":{"x":1,"c":"DE"},"prediction":1,"features":0}]}',
        # 2: invalid UTF-8 in a features value that a later duplicate drops.
        "d2-invalid-utf8-in-dropped-features": _HEAD
        + b'"features":{"x":1,"c":"\xff\xfe"},"features":{"x":1,"c":"DE"},"prediction":1}',
        # 3: the per-event size limit, bypassed by the fast path.
        "d3-large-event-id": sim.replace(b'"event_id":"e-0"', b'"event_id":"' + b"e" * big + b'"'),
        "d3-large-category": sim.replace(b'"device":"', b'"device":"' + b"d" * big),
        "d3-whitespace": sim[:-1] + b" " * big + b"}",
        # 7: NaN/Infinity inside a prediction object is non_finite (README), not wrong_type.
        "d7-nan-score": _HEAD + b'"features":{"x":1,"c":"DE"},"prediction":{"score":NaN}}',
        "d7-infinity-probability": _HEAD
        + b'"features":{"x":1,"c":"DE"},"prediction":{"probabilities":{"a":-Infinity}}}',
        # Not defects: inputs near them that the fast path must get right as well.
        "edge-lone-surrogate-closed-vocabulary": sim.replace(b'"country":"', b'"country":"\\ud800'),
        "edge-lone-surrogate-closed-vocabulary-envelope": b'{"events":['
        + _HEAD
        + b'"features":{"x":1,"y":2,"c":"a","b":true,"d":"\\udc00"},"prediction":1}]}',
        "edge-invalid-utf8-in-dropped-features-envelope": b'{"events":['
        + _HEAD
        + b'"features":"\xff","features":{"x":1,"c":"DE"},"prediction":1}]}',
        "d1-deep-nesting-feature-outside-the-schema": _HEAD
        + b'"features":{"z":'
        + b"[" * 1000
        + b"]" * 1000
        + b'},"prediction":1}',
    }


def _simulated(scenario: str, events: int, seed: int) -> list[bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "events.jsonl"
        argv = ["simulate", "--scenario", scenario, "--events", str(events)]
        argv += ["--seed", str(seed), "--out", str(out)]
        if driftwatch(argv) != 0:
            raise RuntimeError(f"driftwatch {' '.join(argv)} failed")
        return out.read_bytes().splitlines()


def seeds() -> dict[str, bytes]:
    """Lines and envelopes of the simulator's scenarios, one of each kind of line."""
    out: dict[str, bytes] = {"xc-valid": _GOOD}
    for scenario in SCENARIOS:
        lines = _simulated(scenario, 400, 14)
        late = lines[len(lines) * 3 // 4 :]  # after the incident's onset
        picks = {"first": lines[0], "late": late[0]}
        for marker in (b"NaN", b"null", b'"NG"'):
            found = next((x for x in late if marker in x), None)
            if found is not None:
                picks[marker.decode().strip('"').lower()] = found
        for what, line in picks.items():
            out[f"sim-{scenario}-{what}"] = line
        out[f"sim-{scenario}-envelope"] = b'{"events":[' + b",".join(late[:3]) + b"]}"
    labels = [x for x in _simulated("accuracy-drop", 400, 14) if b'"label":' in x]
    labels = [x for x in labels if b'"prediction"' not in x]
    out["sim-accuracy-drop-label"] = labels[0]
    out["sim-accuracy-drop-mixed-envelope"] = b'{"events":[' + out["sim-steady-first"]
    out["sim-accuracy-drop-mixed-envelope"] += b"," + labels[0] + b"]}"
    return out


def write(directory: Path = CORPUS) -> list[Path]:
    """Write the seeds and reproducers into ``directory``; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in {**seeds(), **reproducers()}.items():
        path = directory / name
        path.write_bytes(data)
        written.append(path)
    return written


if __name__ == "__main__":
    paths = write()
    total = sum(p.stat().st_size for p in CORPUS.iterdir())
    print(f"wrote {len(paths)} files; the corpus holds {total:,} bytes", file=sys.stderr)
