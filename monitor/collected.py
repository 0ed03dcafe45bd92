"""The events a stream has collected but not yet used, as its checkpoint holds them.

A model version collects events until it has enough for its next step: ``warmup_events`` to
learn its reference, ``window.size`` to evaluate a window. Until then the messages they came in
cannot be acknowledged, unless the events are in a checkpoint: a version that never finishes its
warm-up (a canary, one stray test call) would otherwise hold its partition's committed offset
for good. The worker writes such a stream's collected events into its checkpoint when it holds
back more than ``kafka.max_unacked_messages`` messages (see
:meth:`monitor.checkpointing.Checkpoints.checkpoint_collected`).

Events are stored as the wire schema's objects (RFC 3339 timestamps, NaN and infinities as
JSON's ``NaN``/``Infinity`` tokens through the checkpoint table's encoder) and validated again
by the schema when read back, so a restored stream holds the same values it collected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from monitor.events import Event, Rejection, parse_object
from monitor.fastdecode import AnyEvent, as_event

#: Bytes of a checkpoint besides its collected events (profile, detector state, alerts: about
#: 25 KB today), kept free below the changelog's record limit.
STATE_MARGIN = 256 << 10


def _plain(event: AnyEvent) -> dict[str, Any]:
    """The wire object of a collected event (timestamps as RFC 3339 text)."""
    value = dict(as_event(event))  # type: ignore[arg-type]  # predictions and feature events
    ts = value.get("timestamp")
    if isinstance(ts, datetime):
        value["timestamp"] = ts.isoformat()
    return value


def encode_collected(events: Iterable[AnyEvent]) -> list[dict[str, Any]]:
    """The JSON-friendly form of collected events, in order."""
    return [_plain(ev) for ev in events]


def collected_size(plain: Sequence[dict[str, Any]]) -> int:
    """About the bytes ``plain`` takes in a checkpoint (its compact JSON)."""
    return len(json.dumps(plain, separators=(",", ":"), allow_nan=True, default=str))


def decode_collected(group: str, plain: Sequence[Any]) -> list[Event]:
    """The events of :func:`encode_collected`, validated by the wire schema again; a value the
    schema refuses means a damaged checkpoint (``ValueError`` naming the stream)."""
    out: list[Event] = []
    for k, value in enumerate(plain):
        event = parse_object(value, k)
        if isinstance(event, Rejection):
            raise ValueError(
                f"checkpoint of {group}: collected event {k} is invalid ({event.reason}: "
                f"{event.message})"
            )
        out.append(event)
    return out
