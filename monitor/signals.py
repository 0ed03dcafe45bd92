"""Alert signals of findings: the labels and annotations people read in an alert."""

from __future__ import annotations

from alerting.names import ALERT_OF_FINDING
from alerting.rules import RuleSet
from alerting.types import Signal
from detectors.window import Finding
from monitor.streams import ModelStream


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def signal_of(
    stream: ModelStream, f: Finding, window: tuple[int, int], rules: RuleSet, position_shift: int
) -> Signal:
    """The alert signal of finding ``f`` of ``stream`` over input positions ``window``."""
    model, version = stream.key
    alertname = ALERT_OF_FINDING[f.kind]
    labels: list[tuple[str, str]] = [("model", model), ("model_version", version)]
    if f.kind in {"feature_drift", "data_quality"}:
        labels.append(("feature", f.subject))
    if f.kind == "data_quality":
        labels.append(("check", f.check))
    if f.kind == "prediction_drift":
        labels.append(("output", f.subject))
    if f.kind == "performance":
        labels.append(("metric", f.statistic))
    rule = rules.rule(alertname)
    # Input positions may pack more than an offset (the Kafka adapter packs the index in
    # an envelope below ``position_shift`` bits); people read offsets.
    first, last = window[0] >> position_shift, window[1] >> position_shift
    profile_id = stream.profile.id if stream.profile is not None else ""
    what = {
        "feature_drift": f"Feature {f.subject} of {model} {version} drifted",
        "prediction_drift": f"The {f.subject} output of {model} {version} drifted",
        "data_quality": (f"Data-quality check {f.check} fails on {f.subject} of {model} {version}"),
        "latency": f"Latency of {model} {version} regressed",
        "performance": f"{f.statistic} of {model} {version} rose",
    }[f.kind]
    ann = {
        "summary": rule.summary or what + ".",
        "description": (
            f"{what}: {f.statistic} {_fmt(f.value)} against threshold {_fmt(f.threshold)} "
            f"in events {first}-{last} (reference {profile_id})."
        ),
        "statistic": f.statistic,
        "value": _fmt(f.value),
        "threshold": _fmt(f.threshold),
        "reference_id": profile_id,
        "window_offsets": f"{first}-{last}",
    }
    for k, v in f.details:
        ann[k] = _fmt(v)
    vers = stream.versions
    for name in ("code", "data", "features"):
        if name in vers:
            ann[f"{name}_version"] = vers[name]
    return Signal(alertname, tuple(labels), ann)
