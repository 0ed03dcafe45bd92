"""The status page on its own: charts from window history, alerts with runbook and trace links,
escaping, bounded history, and no external assets."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np

from alerting.types import AlertState, Transition
from monitor.metrics import WindowSnapshot
from monitor.status_page import StatusHistory, render_page

ROWS = ("amount", "credit_score", "score")


def snapshot(window: int, drifted: float) -> WindowSnapshot:
    drift = {"psi": np.array([0.01, drifted, 0.02]), "js": np.array([0.0, 0.1, 0.0])}
    thr = {"psi": np.array([0.06, 0.06, np.inf]), "js": np.array([0.05, 0.05, 0.05])}
    return WindowSnapshot(
        model="fraud",
        model_version="v<1>",
        window=window,
        n=1000,
        event_time=1.7e9 + window,
        wall_time=0.0,
        rows=ROWS,
        drift=drift,
        threshold=thr,
        alerting_statistics=("psi",),
        quality={},
        quality_threshold={},
        latency=(0.01, 0.05, 0.1 + window / 100),
        score=None,
        labels={},
        reference_id="sha256:abc",
        versions={"data": "snap-1", "code": "3f2a"},
        findings=(),
        offsets=(0, 999),
    )


def transition(state: AlertState, **ann: str) -> Transition:
    return Transition(
        state=state,
        alertname="FeatureDrift",
        labels={"alertname": "FeatureDrift", "model": "fraud", "feature": "credit_score"},
        annotations={"value": "0.2", "threshold": "0.06", "statistic": "psi", **ann},
        starts_at=1.7e9,
        ends_at=None if state is not AlertState.RESOLVED else 1.7e9 + 60,
        offset=3,
        fingerprint="f1",
    )


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse(page: bytes) -> list[tuple[str, dict[str, str | None]]]:
    p = Tags()
    p.feed(page.decode())
    return p.tags


def test_charts_have_one_point_per_window_and_mark_breaches() -> None:
    h = StatusHistory(windows=50, runbook_url=lambda n: f"https://runbooks.example/{n}.md")
    for w in range(1, 8):
        h.add_window(snapshot(w, 0.01 if w < 5 else 0.3))
    page = render_page(h, version="1.2.3", revision="abcdef0123456789")
    tags = parse(page)
    figures = [a for t, a in tags if t == "figure" and "drift" in (a.get("class") or "")]
    assert [f["data-feature"] for f in figures] == list(ROWS)
    assert [f["data-feature"] for f in figures if "breach" in (f["class"] or "")] == [
        "credit_score"
    ]
    score_lines = [a for t, a in tags if t == "polyline" and "score" in (a.get("class") or "")]
    assert len(score_lines) == 3
    assert all(len((a["points"] or "").split()) == 7 for a in score_lines)
    # An infinite threshold (too few values) is not drawn; finite ones are.
    thresholds = [a for t, a in tags if t == "polyline" and "threshold" in (a.get("class") or "")]
    assert len(thresholds) == 2
    assert sum(1 for t, _ in tags if t == "circle") == 3  # windows 5..7 of credit_score
    assert len([a for t, a in tags if t == "polyline" and "p99" in (a.get("class") or "")]) == 1
    # Escaped, and nothing loaded from elsewhere.
    assert b"v&lt;1&gt;" in page and b"v<1>" not in page
    assert not [a for t, a in tags if t in {"script", "img", "link"}]
    assert b"sha256:abc" in page and b"snap-1" in page


def test_history_is_bounded() -> None:
    h = StatusHistory(windows=10)
    for w in range(100):
        h.add_window(snapshot(w, 0.01))
    (s,) = h.as_json()["streams"]
    assert [x["window"] for x in s["windows"]] == list(range(90, 100))
    assert s["windows"][0]["threshold"][2] is None  # inf is not valid JSON


def test_active_alert_with_runbook_and_trace_links_then_resolved() -> None:
    h = StatusHistory(recent=5, runbook_url=lambda n: f"https://runbooks.example/{n}.md")
    url = "http://jaeger.example/trace/" + "a" * 32
    h.send([transition(AlertState.PENDING), transition(AlertState.FIRING, trace_url=url)])
    page = render_page(h, version="1", revision="r").decode()
    active = page.split('class="active-alerts"')[1].split("</table>")[0]
    assert 'data-alertname="FeatureDrift"' in active and "firing" in active
    assert 'href="https://runbooks.example/FeatureDrift.md"' in active
    assert f'href="{url}"' in active
    assert "<title>driftwatch · 1 active alerts</title>" in page
    h.send([transition(AlertState.RESOLVED)])
    page = render_page(h, version="1", revision="r").decode()
    assert "No active alerts." in page
    recent = page.split('class="recent-alerts"')[1]
    assert re.findall(r'<tr class="alert (\w+)"', recent) == ["resolved", "firing", "pending"]


def test_links_with_unsafe_schemes_are_not_rendered() -> None:
    h = StatusHistory(runbook_url=lambda n: "javascript:alert(1)")
    h.send([transition(AlertState.FIRING, trace_url="javascript:alert(2)")])
    page = render_page(h, version="1", revision="r").decode()
    assert "javascript:" not in page
