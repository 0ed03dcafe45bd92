"""Bounded state (issue 14, defect 5): at most ``limits.max_streams`` streams, idle ones evicted
to make room, ``too_many_streams`` and ``warmup_full`` beyond the limits, and an evicted
stream's checkpoint that resumes it consistently. The pipeline is called directly, no I/O."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from alerting.types import Signal
from monitor.app import CheckpointTable
from monitor.config import ConfigError, Settings, settings_from_mapping
from monitor.pipeline import Pipeline

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SOURCE = "predictions/0"


def settings(**limits: Any) -> Settings:
    return settings_from_mapping(
        {
            "reference": {"warmup_events": 100},
            "window": {"size": 50},
            "limits": {"max_warmup_events": 1000, **limits},
        }
    )


class Feed:
    """Lines of several model versions at increasing positions."""

    def __init__(self, p: Pipeline) -> None:
        self.p = p
        self.offset = 0
        self.n = 0

    def line(self, version: str, t: float) -> bytes:
        self.n += 1
        return orjson.dumps(
            {
                "event_id": f"e{self.n}",
                "model": "m",
                "model_version": version,
                "timestamp": t * 1000.0,  # epoch ms
                "features": {
                    "x": float(self.n % 17),
                    "y": float(self.n % 5),
                    "c": "ab"[self.n % 2],
                },
                "prediction": {"score": (self.n % 10) / 10, "label": "ab"[self.n % 2]},
            }
        )

    def send(self, version: str, count: int, t: float, step: float = 1.0) -> None:
        lines = [self.line(version, t + k * step) for k in range(count)]
        self.p.process_lines(lines, self.offset, SOURCE)
        self.offset += count

    def advance(self, version: str, start: float, stop: float) -> None:
        """Events of ``version`` every 4 minutes from ``start`` to ``stop``: the clock moves
        on without a jump (a jump beyond max_future_skew costs an event, see EventClock)."""
        self.send(version, int((stop - start) // 240) + 1, start, 240.0)


def test_streams_are_found_by_key_not_by_scanning() -> None:
    p = Pipeline(settings(max_streams=5000, max_warmup_events=5000 * 100))
    f = Feed(p)
    for k in range(3000):
        f.send(f"v{k}", 1, T0 + k)
    assert len(p.streams) == 3000
    indexes = [s.index for s in p.streams.values()]
    assert len(set(indexes)) == 3000


def test_too_many_streams_is_a_counted_rejection() -> None:
    p = Pipeline(settings(max_streams=2, stream_idle_ttl="1h"))
    f = Feed(p)
    f.send("v1", 10, T0)
    f.send("v2", 10, T0)
    f.send("v3", 5, T0 + 20)
    assert set(p.streams) == {("m", "v1"), ("m", "v2")}
    assert p.stats.rejected == {"too_many_streams": 5}
    assert p.stats.lines == p.stats.accepted + 5
    rejection = p.rejections[0]
    assert rejection.offset == 20
    assert "limits.max_streams 2" in rejection.message


def test_idle_stream_is_evicted_to_make_room() -> None:
    p = Pipeline(settings(max_streams=2, stream_idle_ttl="1h"))
    f = Feed(p)
    f.send("v1", 30, T0)  # 30 events of its warm-up collected, then idle
    f.send("v2", 10, T0)
    f.advance("v2", T0, T0 + 2 * 3600)  # the clock moves on: v1 idle for 2 h
    f.send("v3", 5, T0 + 2 * 3600 + 10)
    assert set(p.streams) == {("m", "v2"), ("m", "v3")}
    assert p.stats.evicted == 1
    assert p.stats.warnings["evicted_events"] == 30
    assert p.stats.rejected == {}
    # v1 comes back while v2 and v3 are both active: no room.
    f.send("v1", 5, T0 + 2 * 3600 + 20)
    assert p.stats.rejected == {"too_many_streams": 5}
    # v3 falls idle: v1 takes its place, a stream of its own again, its warm-up starts over.
    f.advance("v2", T0 + 2 * 3600 + 30, T0 + 4 * 3600)
    f.send("v1", 5, T0 + 4 * 3600 + 10)
    assert set(p.streams) == {("m", "v2"), ("m", "v1")}
    assert p.stats.evicted == 2
    assert len(p.streams[("m", "v1")].pending) == 5


def test_stream_with_an_active_alert_is_not_evicted() -> None:
    p = Pipeline(settings(max_streams=3, stream_idle_ttl="1h"))
    f = Feed(p)
    f.send("v1", 10, T0)
    f.send("v2", 10, T0)
    p.tracker.evaluate("m/v1", T0, [Signal("FeatureDrift", (("model", "m"),))], 0)
    assert p.tracker.has_alerts("m/v1")
    f.advance("v0", T0, T0 + 2 * 3600)  # v1 and v2 idle for 2 h
    f.send("v3", 1, T0 + 2 * 3600 + 10)  # v1 is the idlest but has an alert: v2 goes
    assert set(p.streams) == {("m", "v0"), ("m", "v1"), ("m", "v3")}
    f.send("v4", 1, T0 + 2 * 3600 + 20)
    assert p.stats.rejected == {"too_many_streams": 1}
    assert p.tracker.has_alerts("m/v1")
    assert p.stats.evicted == 1


def test_warmups_hold_a_bounded_number_of_events() -> None:
    # Room for one warm-up of 100 events at a time.
    p = Pipeline(settings(max_streams=10, max_warmup_events=100))
    f = Feed(p)
    f.send("v1", 60, T0)
    f.send("v2", 10, T0 + 60)
    assert p.stats.rejected == {"warmup_full": 10}
    assert "limits.max_warmup_events 100" in p.rejections[0].message
    f.send("v1", 40, T0 + 70)  # v1 learns its reference: its reservation is free
    assert p.streams[("m", "v1")].detector is not None
    f.send("v2", 10, T0 + 110)
    assert ("m", "v2") in p.streams
    assert p.stats.rejected == {"warmup_full": 10}
    held = sum(len(s.pending) for s in p.streams.values() if s.detector is None)
    assert held <= 100


def test_warmup_limit_below_one_warmup_names_the_field_and_file() -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_mapping(
            {"reference": {"warmup_events": 500}, "limits": {"max_warmup_events": 200}},
            "monitor.yaml",
        )
    assert "monitor.yaml" in str(err.value)
    assert "limits.max_warmup_events" in str(err.value)
    with pytest.raises(ConfigError, match=r"monitor\.yaml: limits\.max_streams"):
        settings_from_mapping({"limits": {"max_streams": 0}}, "monitor.yaml")
    with pytest.raises(ConfigError, match=r"monitor\.yaml: limits\.stream_idle_ttl"):
        settings_from_mapping({"limits": {"stream_idle_ttl": "soon"}}, "monitor.yaml")


def test_evicted_stream_resumes_from_its_checkpoint_consistently() -> None:
    table: dict[str, Any] = {}
    p = Pipeline(
        settings(max_streams=2, stream_idle_ttl="1h"), checkpoints=table.get, checkpointing=True
    )
    f = Feed(p)

    def send(version: str, count: int, t: float) -> None:
        f.send(version, count, t)
        table.update(p.take_checkpoints())

    send("v1", 150, T0)  # warm-up (100) and one window (50): checkpointed
    send("v1", 20, T0 + 150)  # an open window, not in the checkpoint
    old = p.streams[("m", "v1")]
    assert table["m/v1"]["events"] == 150
    f.advance("v2", T0 + 150, T0 + 2 * 3600)
    send("v3", 10, T0 + 2 * 3600)  # v1 is evicted
    assert ("m", "v1") not in p.streams
    assert p.stats.warnings["evicted_events"] == 20
    # Predictions of the evicted stream wait in the label join: their labels find no stream
    # (and no other stream takes them), they do not crash the pipeline.
    label = orjson.dumps(
        {"event_id": "e160", "model": "m", "timestamp": (T0 + 2 * 3600) * 1000, "label": "a"}
    )
    p.process_lines([label], f.offset, SOURCE)
    f.offset += 1
    assert p.stats.warnings["label_stream_evicted"] == 1

    f.advance("v3", T0 + 2 * 3600 + 10, T0 + 4 * 3600)
    send("v1", 10, T0 + 4 * 3600)  # v2, idle by now, makes room
    new = p.streams[("m", "v1")]
    assert new is not old and new.index != old.index
    assert p.stats.restored == 1
    assert new.profile is not None and old.profile is not None
    assert new.profile.id == old.profile.id  # the learned reference came back
    # The 20 events evicted with the open window are not counted; the 10 new ones are.
    assert new.events == 150 + 10
    assert len(new.pending) == 10
    assert p.stats.duplicates == 0


def test_checkpoint_table_forgets_its_copy_of_an_evicted_stream() -> None:
    table = CheckpointTable({})  # a dict in place of the Faust table
    p = Pipeline(
        settings(max_streams=1, stream_idle_ttl="1h"),
        checkpoints=table.get,
        foreign_checkpoints=table.foreign,
        checkpointing=True,
        on_evict=[table.stream_evicted],
    )
    f = Feed(p)
    f.send("v9", 150, T0)
    table.update(p.take_checkpoints())
    assert table.foreign("m/v9") is None  # the copy of its own write
    f.advance("v9", T0 + 150, T0 + 7200)
    f.send("v8", 5, T0 + 3 * 3600)  # evicts v9
    assert p.stats.evicted == 1
    assert table._written == {}  # no copy kept for an evicted stream
    assert table["m/v9"]["events"] == 150  # the checkpoint stays, to resume from


def test_a_stream_with_events_in_the_batch_is_not_evicted_for_another() -> None:
    p = Pipeline(settings(max_streams=2, stream_idle_ttl="1h"))
    f = Feed(p)
    f.send("v1", 30, T0)
    f.advance("v2", T0, T0 + 2 * 3600)
    old = p.streams[("m", "v1")]
    t = T0 + 2 * 3600 + 10
    p.process_lines([f.line("v3", t), f.line("v1", t)], f.offset, SOURCE)
    assert p.streams[("m", "v1")] is old
    assert len(old.pending) == 31
    assert p.stats.rejected == {"too_many_streams": 1}
    assert p.stats.evicted == 0
