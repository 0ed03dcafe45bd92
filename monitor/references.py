"""Reference profiles on disk: build them from an events file, load them for replay and run.

A reference file holds one profile or a set ``{"profiles": [...]}`` (one per model version);
``driftwatch reference build`` always writes a set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from detectors.performance import error_of
from detectors.profile import ErrorProfile, ReferenceProfile, build_profile
from monitor.config import ConfigError, Settings
from monitor.events import PredictionEvent, Rejection, event_kind, parse_event
from monitor.streams import StreamKey, labels_of, latency_of, predicted_of, scores_of

#: Kilobytes of lines per chunk. Small enough that a chunk's decoded events are still in the CPU
#: cache when their window is computed and when they are freed: replaying 200,000 events went
#: from 97-101 k to 138-147 k events/s when this went from 4,096 to 256 (same machine, minutes
#: apart, interleaved; 128 was no faster).
CHUNK_KB = 256


def iter_lines(path: str | Path, chunk: int = CHUNK_KB) -> Iterator[list[bytes]]:
    """Lines of a file in chunks of about ``chunk`` KB (bytes, newline included)."""
    with open(path, "rb") as f:
        while True:
            lines = f.readlines(chunk * 1024)
            if not lines:
                return
            yield lines


def build_references(path: str | Path, settings: Settings) -> list[ReferenceProfile]:
    """One profile per (model, model_version) found in an events file.

    Labels in the same file are joined by ``event_id`` to record the reference error.
    """
    streams: dict[StreamKey, list[PredictionEvent]] = {}
    labels: dict[str, Any] = {}
    for lines in iter_lines(path):
        for raw in lines:
            ev = parse_event(raw, 0, settings.events.max_bytes)
            if isinstance(ev, Rejection):
                continue
            kind = event_kind(ev)
            if kind == "prediction":
                key = (ev["model"], ev["model_version"])  # type: ignore[typeddict-item]
                streams.setdefault(key, []).append(ev)  # type: ignore[arg-type]
            elif kind == "label":
                labels[ev["event_id"]] = ev["label"]  # type: ignore[typeddict-item]
    if not streams:
        raise ConfigError(f"{path}: no valid prediction events to build a reference from")
    ref = settings.reference
    source = Path(path).name
    profiles = []
    for (model, version), evs in streams.items():
        profile = build_profile(
            model,
            version,
            source,
            [e["features"] for e in evs],
            scores_of(evs),
            labels_of(evs),
            latency_of(evs),
            bins=ref.bins,
            max_categories=ref.max_categories,
            numeric_names=settings.features.numeric or None,
            categorical_names=settings.features.categorical or None,
        )
        graded = [
            g
            for e in evs
            if e["event_id"] in labels
            and (g := error_of(predicted_of(e["prediction"]), labels[e["event_id"]])) is not None
        ]
        if graded:
            kind_ = graded[0][0]
            errs = np.array([x for k, x in graded if k == kind_])
            profile = profile.with_error(
                ErrorProfile(
                    kind="classification" if kind_ == "classification" else "regression",
                    n=int(errs.size),
                    total=float(errs.sum()),
                    total_sq=float((errs * errs).sum()),
                )
            )
        profiles.append(profile)
    return profiles


def write_references(profiles: list[ReferenceProfile], out: str | Path) -> None:
    """Write a reference set as readable JSON."""
    body = {"format": 1, "profiles": [json.loads(p.to_json()) for p in profiles]}
    Path(out).write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def load_references(path: str | Path) -> dict[StreamKey, ReferenceProfile]:
    """Load a profile or a set of profiles; errors name the file."""
    p = Path(path)
    try:
        body = json.loads(p.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{p}: not valid JSON: {exc}") from exc
    raw = body.get("profiles", [body]) if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise ConfigError(f'{p}: expected a reference profile or {{"profiles": [...]}}')
    out: dict[StreamKey, ReferenceProfile] = {}
    for i, item in enumerate(raw):
        try:
            prof = ReferenceProfile.from_json(json.dumps(item))
        except ValueError as exc:
            raise ConfigError(f"{p}: profiles[{i}]: invalid reference profile: {exc}") from exc
        out[(prof.model, prof.model_version)] = prof
    return out
