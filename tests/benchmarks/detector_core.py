"""Detector core on columnar arrays versus River's per-value ADWIN.

One window of 1,000 steady events x 25 features (20 numeric + 5 categorical) is compared with a
reference learned, as the pipeline does, from the 5,000 warm-up events before it. Rates are
feature values per second (25,000 per window):

* ``WindowDetector.evaluate`` alone, on columns prepared beforehand exactly as
  :meth:`monitor.streams.ModelStream.close_window` prepares them (the detector also evaluates the
  prediction score, label and latency rows, as in the pipeline; only the 25,000 feature values
  are counted);
* column extraction + ``evaluate`` (the same preparation inside the timed call);
* ``ModelStream.close_window`` itself, as a check that the replica above matches the library;
* River's ``drift.ADWIN()`` updated once per value (``for v in values: adwin.update(v)``) over
  the same window's values (numeric values, then categorical codes, feature by feature; the NaN
  of null numeric values are left out since ADWIN has no notion of a missing value), and for
  reference one ADWIN per feature over the same values.

Target: ``evaluate`` at least 4x River's per-value rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from river import drift

from detectors.columns import Columns
from detectors.window import WindowDetector
from monitor.events import Event, Rejection, parse_event
from monitor.pipeline import Pipeline
from monitor.scenarios.simulate import generate
from monitor.streams import ModelStream, window_inputs
from tests.benchmarks.harness import (
    BenchResult,
    Context,
    Row,
    cprofile_top,
    interleaved,
    log,
    profile_lines,
    ratio_row,
)

WINDOW = 1000
TARGET_RATIO = 4.0
SEED = 0
TOP = 10
PRINT_TOP = 5


class _ChangeDetector(Protocol):
    def update(self, x: float) -> object: ...


#: River's ADWIN behind a typed signature (River's own annotations are incomplete).
new_adwin: Callable[[], _ChangeDetector] = drift.ADWIN

Prepared = tuple[Columns, np.ndarray | None, np.ndarray | None, np.ndarray | None]


def prepare_columns(det: WindowDetector, evs: list[Any]) -> Prepared:
    """Columns and prediction arrays of a window, exactly as ``ModelStream.close_window``."""
    return window_inputs(det, evs)


def _parse(lines: list[bytes]) -> list[Event]:
    out: list[Event] = []
    for i, raw in enumerate(lines):
        ev = parse_event(raw, i)
        if isinstance(ev, Rejection):
            raise RuntimeError(f"simulated line {i} rejected: {ev.message}")
        out.append(ev)
    return out


def setup() -> tuple[ModelStream, list[Any]]:
    """A stream whose detector learned from the warm-up, and the next window's events."""
    pipeline = Pipeline()
    warmup = pipeline.settings.reference.warmup_events
    lines = list(generate("steady", warmup + WINDOW, SEED).lines())
    pipeline.process_lines(lines[:warmup])
    (stream,) = pipeline.streams.values()
    if stream.detector is None:
        raise RuntimeError("the warm-up did not produce a detector")
    return stream, _parse(lines[warmup:])


def river_values(cols: Columns) -> list[list[float]]:
    """The window's feature values per feature as Python floats, NaN left out."""
    out: list[list[float]] = [row[np.isfinite(row)].tolist() for row in cols.numeric.values]
    out += [c.astype(np.float64).tolist() for c in cols.categorical.codes]
    return out


def run(ctx: Context) -> BenchResult:
    """Run the benchmark (see the module docstring)."""
    log("detector_core: warm-up and window")
    stream, window = setup()
    det = stream.detector
    assert det is not None
    prepared = prepare_columns(det, window)
    cols = prepared[0]
    n_features = len(det.numeric_names) + len(det.categorical_names)
    work = float(cols.n * n_features)

    # The replica must agree with the library before it is timed.
    stream.pending = list(window)
    lib = stream.close_window()
    mine = det.evaluate(*prepared)
    for s, arr in lib.drift.items():
        if not np.allclose(arr, mine.drift[s], equal_nan=True):
            raise RuntimeError(f"prepare_columns disagrees with close_window on {s}")

    per_feature = river_values(cols)
    flat = [v for col in per_feature for v in col]
    river_work = float(len(flat))

    def evaluate() -> object:
        return det.evaluate(*prepared)

    def extract_evaluate() -> object:
        return det.evaluate(*prepare_columns(det, window))

    def close_window() -> object:
        stream.pending = list(window)
        return stream.close_window()

    def river_adwin() -> object:
        adwin = new_adwin()
        for v in flat:
            adwin.update(v)
        return adwin

    def river_adwin_per_feature() -> object:
        last = None
        for col in per_feature:
            last = new_adwin()
            for v in col:
                last.update(v)
        return last

    repeats = ctx.reps(full=7, quick=3)
    log(f"detector_core: timing, {repeats} interleaved rounds")
    t = interleaved(
        {
            "evaluate": evaluate,
            "extract_evaluate": extract_evaluate,
            "close_window": close_window,
            "river_adwin": river_adwin,
            "river_adwin_per_feature": river_adwin_per_feature,
        },
        repeats=repeats,
        min_seconds=0.05 if ctx.quick else 0.3,
    )
    r_eval = t["evaluate"].rate(work)
    r_extract = t["extract_evaluate"].rate(work)
    r_close = t["close_window"].rate(work)
    r_river = t["river_adwin"].rate(river_work)
    r_river_pf = t["river_adwin_per_feature"].rate(river_work)
    unit = "values/s"
    rows = [
        Row("WindowDetector.evaluate", r_eval.median, r_eval.best, unit),
        Row("column extraction + evaluate", r_extract.median, r_extract.best, unit),
        Row("ModelStream.close_window (library)", r_close.median, r_close.best, unit),
        Row("River ADWIN per value (baseline)", r_river.median, r_river.best, unit),
        Row("River ADWIN, one per feature", r_river_pf.median, r_river_pf.best, unit),
        ratio_row("evaluate / River ADWIN", r_eval, r_river, TARGET_RATIO),
        ratio_row("extraction+evaluate / River ADWIN", r_extract, r_river),
        ratio_row("evaluate / River, one per feature", r_eval, r_river_pf),
        Row(
            "evaluate, time per window", t["evaluate"].median * 1e3, t["evaluate"].best * 1e3, "ms"
        ),
    ]
    # Where the window time goes: cProfile over repeated extraction + evaluate.
    windows = 50 if ctx.quick else 200

    def many() -> None:
        for _ in range(windows):
            extract_evaluate()

    log(f"detector_core: {windows} windows of extraction + evaluate under cProfile")
    prof = cprofile_top(many, float(windows), "window", TOP)
    notes = profile_lines(
        f"detector_core: top {PRINT_TOP} by self time, extraction + evaluate, cProfile:",
        prof,
        "window",
        PRINT_TOP,
    )
    details: dict[str, Any] = {
        "window_events": cols.n,
        "numeric_features": len(det.numeric_names),
        "categorical_features": len(det.categorical_names),
        "feature_values_per_window": int(work),
        "detector_rows": list(det.rows),
        "has_score": det.has_score,
        "has_label": det.has_label,
        "has_latency": det.profile.latency is not None,
        "river_values": int(river_work),
        "repeats": repeats,
        "target": f"evaluate >= {TARGET_RATIO:g}x River ADWIN per-value rate",
        "timings": {name: tm.to_json() for name, tm in t.items()},
        "profile": prof,
    }
    return BenchResult("detector_core", rows, details, notes)
