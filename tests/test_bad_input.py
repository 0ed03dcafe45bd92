"""Bad input: every line is counted as accepted or rejected by reason, and nothing stops."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.cli import main
from monitor.events import Reason, Rejection, parse_event
from monitor.fastdecode import FastDecoder
from monitor.pipeline import Pipeline
from monitor.replay import format_summary, replay
from monitor.scenarios.simulate import generate

GOOD = {
    "event_id": "e-1",
    "model": "fraud",
    "model_version": "v1",
    "timestamp": "2026-01-01T00:00:00.000Z",
    "features": {"amount": 12.3, "country": "DE", "age": None},
    "prediction": {"score": 0.82, "label": "fraud"},
    "latency_ms": 12.5,
    "versions": {"code": "3f2a1c9", "data": "snap-2026-01-01", "features": "fs-7"},
}


def line(**changes: object) -> bytes:
    ev = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in ev.items() if v is not ...})


def reason(raw: bytes) -> str:
    r = parse_event(raw)
    return r.reason.value if isinstance(r, Rejection) else "accepted"


def test_each_bad_input_has_its_reason() -> None:
    cases = {
        b'{"event_id": "e-1", "model": ': "malformed_json",
        b"[1, 2, 3]": "not_an_object",
        b'"just a string"': "not_an_object",
        b"": "empty",
        b"   \n": "empty",
        line(event_id=7): "wrong_type",
        line(features={"amount": [1, 2]}): "wrong_type",
        line(features="amount=3"): "wrong_type",
        line(model_version=...): "missing_field",
        line(timestamp=...): "missing_field",
        line(timestamp="yesterday"): "invalid_timestamp",
        line(latency_ms=-1): "invalid_value",
        line(prediction={"score": "high"}): "wrong_type",
        GOOD_BYTES.replace(b"12.5", b"NaN"): "non_finite",
        GOOD_BYTES.replace(b"12.5", b"1e400"): "non_finite",
        GOOD_BYTES.replace(b'"DE"', b'"D\xff"'): "invalid_utf8",
        b'{"type": "other", "event_id": "x"}': "unknown_event_type",
        b'{"event_id": "x", "model": "m"}': "unknown_event_type",
    }
    got = {raw: reason(raw) for raw in cases}
    assert got == cases


GOOD_BYTES = orjson.dumps(GOOD)


def test_accepted_oddities_are_kept_and_counted() -> None:
    nan_feature = GOOD_BYTES.replace(b"12.3", b"NaN")
    huge = GOOD_BYTES.replace(b"12.3", b"123456789012345678901234567890")
    inf_feature = GOOD_BYTES.replace(b"12.3", b"1e400")
    extra = line(request_id="r-9")
    for raw in (nan_feature, huge, inf_feature, extra):
        assert not isinstance(parse_event(raw), Rejection), raw
    p = Pipeline()
    p.process_lines([nan_feature, huge, inf_feature, extra], 0)
    assert p.stats.accepted == 4
    assert p.stats.warnings["unknown_field"] == 1


def test_messages_name_the_field() -> None:
    r = parse_event(line(features={"amount": {"nested": 1}}))
    assert isinstance(r, Rejection)
    assert r.message.startswith("features.amount:")
    r = parse_event(line(model_version=...))
    assert isinstance(r, Rejection)
    assert r.message == "model_version: Field required"


def test_too_large_is_rejected_before_parsing() -> None:
    big = line(features={f"f{i}": float(i) for i in range(5000)})
    r = parse_event(big, 3, max_bytes=1024)
    assert isinstance(r, Rejection)
    assert r.reason is Reason.TOO_LARGE
    assert r.offset == 3


def test_replay_continues_and_reconciles(tmp_path: Path) -> None:
    lines = [
        GOOD_BYTES,
        b'{"broken',
        b"",
        b"\xff\xfe\x00garbage",
        line(event_id=5),
        line(latency_ms=...),  # latency is optional
        GOOD_BYTES.replace(b"12.5", b"Infinity"),
        line(model=...),
        line(extra_field=True),
        GOOD_BYTES,
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    pipeline = Pipeline()
    result = replay(path, pipeline, progress=False)
    s = result.stats
    assert s.lines == len(lines)
    assert s.accepted == 4
    assert dict(s.rejected) == {
        "malformed_json": 1,
        "invalid_utf8": 1,
        "empty": 1,
        "wrong_type": 1,
        "non_finite": 1,
        "missing_field": 1,
    }
    assert s.accepted + sum(s.rejected.values()) == s.lines
    text = format_summary(result)
    assert "accepted + rejected = lines read: yes" in text
    assert "rejected: malformed_json" in text
    assert [r.offset for r in pipeline.rejections] == [1, 2, 3, 4, 6, 7]


def test_replay_cli_prints_summary(tmp_path: Path, capsys: object) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(GOOD_BYTES + b"\nnot json\n")
    assert main(["replay", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "lines read" in out
    assert "rejected: malformed_json" in out


def test_replay_rejects_a_line_that_raises_as_internal_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unexpected exception on one line (here the fast decoder's) rejects that line as
    ``internal_error``: counted once, the other lines of its chunk accepted, exit status 0."""
    lines = [raw.rstrip(b"\n") for raw in generate("steady", 3000, 1).lines()]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    decode = FastDecoder.lines

    def exploding(self: FastDecoder, chunk: Any) -> Any:
        chunk = list(chunk)
        if any(b'"e-1234"' in raw for raw in chunk):
            raise RecursionError("maximum recursion depth exceeded")
        return decode(self, chunk)

    monkeypatch.setattr(FastDecoder, "lines", exploding)
    assert main(["replay", str(path), "--no-progress"]) == 0
    out = capsys.readouterr()
    assert re.search(r"rejected: internal_error\s+1\n", out.out)
    assert re.search(r"accepted\s+2,999\n", out.out)
    assert "accepted + rejected = lines read: yes" in out.out
    (record,) = caplog.records  # logged once, with the traceback of that line alone
    assert record.exc_info is not None and "line 1235" in record.getMessage()
    assert record.exc_info[1] is not None and record.exc_info[1].__context__ is None


@pytest.mark.parametrize("schema", [False, True])
def test_replay_goes_on_after_the_reproducers_of_issue_14(tmp_path: Path, schema: bool) -> None:
    """The poison lines of issue 14 (a timestamp after year 9999; features nested 1,000 deep
    once a schema is compiled): each is rejected by its decoder with its reason."""
    lines = [raw.rstrip(b"\n") for raw in generate("steady", 2100 if schema else 10, 1).lines()]
    far = (
        b'{"event_id":"e","model":"fraud","model_version":"v1","timestamp":253402300800000,'
        b'"features":{},"prediction":1}'
    )
    deep = lines[0].replace(b'"amount":', b'"amount":' + b"[" * 1000 + b"]" * 1000 + b',"x":')
    lines += [far, deep, lines[1]]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    s = replay(path, Pipeline(), progress=False).stats
    assert s.lines == len(lines) and s.accepted == len(lines) - 2
    assert sum(s.rejected.values()) == 2
    assert s.rejected == {"invalid_timestamp": 1, "too_deep": 1}
