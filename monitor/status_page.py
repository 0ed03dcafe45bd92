"""The built-in status page at ``/`` of the metrics port: one self-contained HTML document.

No external assets (no scripts, fonts or styles from elsewhere): charts are inline SVG drawn on
the server. Per model version it shows the drift score of every feature over the last windows
against its calibrated threshold (statistic: the first of ``drift.statistics``), the latency
percentiles per window, the reference profile id and the serving versions (code, data, feature
set); above them the active alerts and below the recent state changes, each with its runbook
and trace links. ``/api/status`` serves the same numbers as JSON.

:class:`StatusHistory` collects what the page shows: it is told every window snapshot (from
:class:`monitor.metrics.MonitorMetrics`) and every alert state change (it is an alert sink);
both arrive from the pipeline's thread, pages are rendered on the server's threads, and a lock
keeps them apart.
"""

from __future__ import annotations

import html
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from alerting.fingerprint import fingerprint
from alerting.state import AlertTracker
from alerting.timefmt import iso
from alerting.types import AlertState, Transition
from monitor.metrics import WindowSnapshot

#: Line colours of the latency chart and the drift charts.
_P_COLOURS = {"p50": "#2b8a3e", "p95": "#e67700", "p99": "#c92a2a"}
_SCORE = "#1c7ed6"
_THRESHOLD = "#868e96"
_BREACH = "#e03131"


@dataclass(slots=True)
class _Point:
    window: int
    event_time: float
    values: tuple[float, ...]
    thresholds: tuple[float, ...]
    latency: tuple[float, float, float] | None


@dataclass(slots=True)
class _Stream:
    model: str
    model_version: str
    statistic: str
    rows: tuple[str, ...]
    points: deque[_Point]
    reference_id: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    n: int = 0
    findings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert as the page lists it."""

    state: str
    alertname: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    since: float
    ended: float | None
    fingerprint: str
    runbook_url: str


class StatusHistory:
    """What the status page shows, kept bounded.

    Parameters
    ----------
    windows
        Windows kept per model version for the charts (``metrics.history_windows``).
    recent
        Past alert state changes listed (``metrics.recent_alerts``).
    runbook_url
        The runbook link of an alert name.
    tracker
        The alert state machine: alerts it restored from a checkpoint are listed as active
        even though no state change announced them in this process.
    """

    def __init__(
        self,
        windows: int = 240,
        recent: int = 50,
        runbook_url: Callable[[str], str] | None = None,
        tracker: AlertTracker | None = None,
    ) -> None:
        self.windows = windows
        self.runbook_url = runbook_url or (lambda name: "")
        self.tracker = tracker
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        self._active: dict[str, AlertView] = {}
        self._recent: deque[AlertView] = deque(maxlen=recent)

    # -- input ---------------------------------------------------------------------------------

    def add_window(self, snap: WindowSnapshot) -> None:
        """Append one window (the primary statistic per feature and the latency)."""
        stat = snap.alerting_statistics[0] if snap.alerting_statistics else "psi"
        point = _Point(
            snap.window,
            snap.event_time,
            tuple(float(x) for x in snap.drift[stat]),
            tuple(float(x) for x in snap.threshold[stat]),
            snap.latency,
        )
        with self._lock:
            s = self._streams.get(snap.group)
            if s is None or s.rows != snap.rows or s.statistic != stat:
                s = _Stream(
                    snap.model, snap.model_version, stat, snap.rows, deque(maxlen=self.windows)
                )
                self._streams[snap.group] = s
            s.points.append(point)
            s.reference_id = snap.reference_id
            s.versions = dict(snap.versions)
            s.n = snap.n
            s.findings = snap.findings

    def forget(self, group: str) -> None:
        """Drop the history of a model version the pipeline evicted (``limits``)."""
        with self._lock:
            self._streams.pop(group, None)

    def send(self, transitions: list[Transition]) -> None:
        """Alert sink: track active alerts and remember past changes."""
        with self._lock:
            for t in transitions:
                view = AlertView(
                    t.state.value,
                    t.alertname,
                    dict(t.labels),
                    dict(t.annotations),
                    t.starts_at,
                    t.ends_at,
                    t.fingerprint,
                    self.runbook_url(t.alertname),
                )
                if t.state in (AlertState.PENDING, AlertState.FIRING):
                    self._active[t.fingerprint] = view
                elif t.state in (AlertState.RESOLVED, AlertState.TRANSIENT):
                    self._active.pop(t.fingerprint, None)
                self._recent.appendleft(view)

    def close(self) -> None:
        """Nothing to release."""

    # -- output --------------------------------------------------------------------------------

    def active(self) -> list[AlertView]:
        """Pending and firing alerts, firing first."""
        with self._lock:
            views = dict(self._active)
        if self.tracker is not None:
            for alert in self.tracker.active():
                fp = fingerprint(alert.labels)
                known = views.get(fp)
                if known is None or known.state != alert.state.value:
                    views[fp] = AlertView(
                        alert.state.value,
                        alert.alertname,
                        dict(alert.labels),
                        dict(known.annotations if known else alert.annotations),
                        alert.fired_at or alert.active_at,
                        None,
                        fp,
                        self.runbook_url(alert.alertname),
                    )
        order = {"firing": 0, "pending": 1}
        return sorted(views.values(), key=lambda v: (order.get(v.state, 2), v.alertname, v.since))

    def recent(self) -> list[AlertView]:
        """Past state changes, newest first."""
        with self._lock:
            return list(self._recent)

    def as_json(self) -> dict[str, Any]:
        """Everything the page shows, JSON-friendly (``/api/status``)."""
        with self._lock:
            streams = [
                {
                    "model": s.model,
                    "model_version": s.model_version,
                    "statistic": s.statistic,
                    "reference_id": s.reference_id,
                    "versions": dict(s.versions),
                    "features": list(s.rows),
                    "windows": [
                        {
                            "window": p.window,
                            "event_time": iso(p.event_time),
                            "drift": [_num(v) for v in p.values],
                            "threshold": [_num(v) for v in p.thresholds],
                            "latency_seconds": list(p.latency) if p.latency else None,
                        }
                        for p in s.points
                    ],
                }
                for s in self._streams.values()
            ]
        return {
            "streams": streams,
            "active_alerts": [_alert_json(a) for a in self.active()],
            "recent_alerts": [_alert_json(a) for a in self.recent()],
        }

    def streams(self) -> list[_Stream]:
        """Copies of the per model version histories."""
        with self._lock:
            return [
                _Stream(
                    s.model,
                    s.model_version,
                    s.statistic,
                    s.rows,
                    deque(s.points),
                    s.reference_id,
                    dict(s.versions),
                    s.n,
                    s.findings,
                )
                for s in self._streams.values()
            ]


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _alert_json(a: AlertView) -> dict[str, Any]:
    return {
        "state": a.state,
        "alertname": a.alertname,
        "labels": dict(a.labels),
        "annotations": dict(a.annotations),
        "since": iso(a.since),
        "ended": iso(a.ended) if a.ended is not None else None,
        "fingerprint": a.fingerprint,
        "runbook_url": a.runbook_url,
    }


# -- rendering ---------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#212529;
background:#f8f9fa}
header{background:#212529;color:#f8f9fa;padding:10px 20px;display:flex;gap:24px;
align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}
header span{color:#adb5bd}
main{padding:12px 20px}
section{background:#fff;border:1px solid #dee2e6;border-radius:6px;margin:0 0 16px;padding:12px}
h2{font-size:16px;margin:0 0 8px}
h3{font-size:14px;margin:12px 0 6px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e9ecef;vertical-align:top}
th{font-weight:600;color:#495057}
.state{font-weight:700;text-transform:uppercase;font-size:12px;padding:2px 6px;border-radius:3px}
.firing{background:#ffe3e3;color:#c92a2a}.pending{background:#fff3bf;color:#a86400}
.resolved{background:#d3f9d8;color:#2b8a3e}.transient{background:#e7f5ff;color:#1864ab}
.flapping,.flapping_stopped{background:#f3d9fa;color:#862e9c}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:10px}
figure{margin:0;border:1px solid #e9ecef;border-radius:4px;padding:4px}
figure.breach{border-color:#ffa8a8}
figcaption{font-size:12px;color:#495057;display:flex;justify-content:space-between}
.meta{color:#495057;font-size:12px}
.legend{font-size:12px;color:#495057;justify-content:flex-start;gap:14px}
code{font-size:12px}
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _href(url: str) -> str | None:
    scheme = urlparse(url).scheme
    return url if scheme in {"http", "https", "file"} else None


def _link(url: str, text: str) -> str:
    href = _href(url) if url else None
    return f'<a href="{_e(href)}">{_e(text)}</a>' if href else ""


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "∞" if x > 0 else "–"
    return f"{x:.3g}"


def _polyline(
    values: Sequence[float], x0: float, x1: float, y: Callable[[float], float], **attrs: str
) -> str:
    n = len(values)
    pts = []
    for i, v in enumerate(values):
        if not math.isfinite(v):
            continue
        x = x0 + (x1 - x0) * (i / (n - 1) if n > 1 else 0.5)
        pts.append(f"{x:.1f},{y(v):.1f}")
    if not pts:
        return ""
    extra = " ".join(f'{k.replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())
    return f'<polyline points="{" ".join(pts)}" fill="none" {extra}/>'


def _chart(
    series: Mapping[str, tuple[Sequence[float], str, str]],
    width: int = 250,
    height: int = 90,
    breaches: Sequence[bool] = (),
    label: str = "",
) -> str:
    """An inline SVG line chart; ``series`` maps a name to (values, colour, dash)."""
    finite = [v for vals, _, _ in series.values() for v in vals if math.isfinite(v)]
    top = max(finite) * 1.1 if finite and max(finite) > 0 else 1.0
    pad_l, pad_r, pad_t, pad_b = 34, 4, 4, 14
    x0, x1 = pad_l, width - pad_r
    y_top, y_bot = pad_t, height - pad_b

    def y(v: float) -> float:
        return y_bot - (y_bot - y_top) * min(max(v / top, 0.0), 1.0)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}" class="chart">',
        f'<rect x="{x0}" y="{y_top}" width="{x1 - x0}" height="{y_bot - y_top}" '
        'fill="#fff" stroke="#dee2e6"/>',
        f'<text x="{x0 - 3}" y="{y_top + 9}" font-size="9" text-anchor="end" '
        f'fill="#868e96">{_e(_fmt(top))}</text>',
        f'<text x="{x0 - 3}" y="{y_bot}" font-size="9" text-anchor="end" fill="#868e96">0</text>',
    ]
    for name, (values, colour, dash) in series.items():
        attrs = {"stroke": colour, "stroke_width": "1.5", "class": f"series {name}"}
        if dash:
            attrs["stroke_dasharray"] = dash
        parts.append(_polyline(values, x0, x1, y, **attrs))
    first = next(iter(series.values()))[0] if series else []
    n = len(first)
    for i, hit in enumerate(breaches):
        if hit and i < n and math.isfinite(first[i]):
            x = x0 + (x1 - x0) * (i / (n - 1) if n > 1 else 0.5)
            parts.append(f'<circle cx="{x:.1f}" cy="{y(first[i]):.1f}" r="2" fill="{_BREACH}"/>')
    parts.append(f'<text x="{x0}" y="{height - 2}" font-size="9" fill="#868e96">{n} windows</text>')
    parts.append("</svg>")
    return "".join(parts)


def _alerts_table(alerts: Sequence[AlertView], recent: bool) -> str:
    if not alerts:
        return f'<p class="meta">{"No state changes yet." if recent else "No active alerts."}</p>'
    head = "<tr><th>state</th><th>alert</th><th>labels</th><th>value / threshold</th>"
    head += "<th>since</th><th>links</th></tr>"
    rows = []
    for a in alerts:
        labels = ", ".join(
            f"{_e(k)}={_e(v)}" for k, v in sorted(a.labels.items()) if k not in {"alertname"}
        )
        ann = a.annotations
        value = f"{_e(ann.get('value', ''))} / {_e(ann.get('threshold', ''))}"
        if ann.get("statistic"):
            value += f" <span class='meta'>({_e(ann['statistic'])})</span>"
        links = [
            _link(a.runbook_url, "runbook"),
            _link(ann.get("trace_url", ""), "trace"),
        ]
        if ann.get("trace_id") and not ann.get("trace_url"):
            links.append(f"<code>trace {_e(ann['trace_id'])}</code>")
        when = iso(a.since) + (f" – {iso(a.ended)}" if a.ended is not None else "")
        summary = ann.get("summary", "")
        rows.append(
            f'<tr class="alert {_e(a.state)}" data-alertname="{_e(a.alertname)}">'
            f'<td><span class="state {_e(a.state)}">{_e(a.state)}</span></td>'
            f"<td><b>{_e(a.alertname)}</b><br><span class='meta'>{_e(summary)}</span></td>"
            f"<td class='meta'>{labels}</td><td>{value}</td><td class='meta'>{_e(when)}</td>"
            f"<td>{' '.join(x for x in links if x)}</td></tr>"
        )
    cls = "recent-alerts" if recent else "active-alerts"
    return f'<table class="{cls}">{head}{"".join(rows)}</table>'


def _stream_section(s: _Stream) -> str:
    pts = list(s.points)
    vers = ", ".join(f"{_e(k)} <code>{_e(v)}</code>" for k, v in sorted(s.versions.items()))
    last = pts[-1] if pts else None
    parts = [
        f'<section class="stream" data-model="{_e(s.model)}" '
        f'data-model-version="{_e(s.model_version)}">',
        f"<h2>{_e(s.model)} <span class='meta'>version</span> {_e(s.model_version)}</h2>",
        f'<p class="meta">reference profile <code class="reference-id">{_e(s.reference_id)}'
        f"</code> · versions: {vers or '–'} · last window #{last.window if last else 0} "
        f"({s.n} events, newest event {iso(last.event_time) if last else '–'})</p>",
    ]
    lat = [p.latency for p in pts]
    if any(x is not None for x in lat):
        series = {
            name: (
                [x[i] if x is not None else math.nan for x in lat],
                _P_COLOURS[name],
                "",
            )
            for i, name in enumerate(("p50", "p95", "p99"))
        }
        legend = " ".join(f"<span style='color:{c}'>■</span> {n}" for n, c in _P_COLOURS.items())
        parts.append(
            "<h3>Prediction latency per window (seconds)</h3>"
            f'<figure class="latency">{_chart(series, 520, 110, label="latency")}'
            f"<figcaption class='legend'>{legend}</figcaption></figure>"
        )
    parts.append(
        f"<h3>Drift per feature ({_e(s.statistic)}) against its calibrated threshold</h3>"
        f"<p class='legend'><span style='color:{_SCORE}'>■</span> score "
        f"<span style='color:{_THRESHOLD}'>■</span> threshold (dashed) "
        f"<span style='color:{_BREACH}'>●</span> above threshold</p>"
        '<div class="grid">'
    )
    for r, row in enumerate(s.rows):
        values = [p.values[r] for p in pts]
        thresholds = [p.thresholds[r] for p in pts]
        breaches = [v > t for v, t in zip(values, thresholds, strict=True)]
        now_v = values[-1] if values else math.nan
        now_t = thresholds[-1] if thresholds else math.nan
        cls = "drift breach" if breaches and breaches[-1] else "drift"
        chart = _chart(
            {
                "score": (values, _SCORE, ""),
                "threshold": (thresholds, _THRESHOLD, "4 3"),
            },
            breaches=breaches,
            label=f"drift {row}",
        )
        parts.append(
            f'<figure class="{cls}" data-feature="{_e(row)}">'
            f"<figcaption><b>{_e(row)}</b><span>{_fmt(now_v)} / {_fmt(now_t)}</span>"
            f"</figcaption>{chart}</figure>"
        )
    parts.append("</div></section>")
    return "".join(parts)


def render_page(
    history: StatusHistory,
    *,
    version: str,
    revision: str,
    ready: tuple[bool, str] = (True, ""),
    started: float | None = None,
    refresh_seconds: int = 10,
) -> bytes:
    """The status page as UTF-8 HTML (no external assets)."""
    streams = sorted(history.streams(), key=lambda s: (s.model, s.model_version))
    active = history.active()
    up = f"up {time.time() - started:,.0f} s" if started is not None else ""
    ok, why = ready
    body = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">',
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>driftwatch · {len(active)} active alerts</title><style>{_CSS}</style></head>",
        "<body><header><h1>driftwatch</h1>",
        f"<span>version {_e(version)} · revision <code>{_e(revision[:12])}</code></span>",
        f"<span class='ready'>{'ready' if ok else 'not ready'}{': ' + _e(why) if why else ''}"
        f"</span><span>{_e(up)}</span>",
        "<span><a style='color:#a5d8ff' href='metrics'>metrics</a> · "
        "<a style='color:#a5d8ff' href='api/status'>json</a></span></header><main>",
        f"<section><h2>Active alerts ({len(active)})</h2>{_alerts_table(active, False)}</section>",
    ]
    if not streams:
        body.append("<section><p class='meta'>No window evaluated yet.</p></section>")
    body += [_stream_section(s) for s in streams]
    body.append(
        f"<section><h2>Recent state changes</h2>{_alerts_table(history.recent(), True)}"
        "</section></main></body></html>"
    )
    return "".join(body).encode("utf-8")
