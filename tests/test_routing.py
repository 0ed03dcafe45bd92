"""Routing: Alertmanager matchers, the tree with ``continue``, settings, and agreement with
``amtool config routes test`` (Alertmanager 0.25) on a tree that exercises every rule."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from alerting.router import Router, RouterConfig
from alerting.routing import Matcher, Route, parse_matchers
from alerting.settings import NotificationSettings, RouteSettings
from alerting.types import AlertState, NoticeKind, Transition

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "labels", "hit"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ("severity=critical", {"severity": "warning"}, False),
        ('severity!="info"', {}, True),
        ('model=~"fraud|churn"', {"model": "churn"}, True),
        ('model=~"fraud"', {"model": "fraud-eu"}, False),  # anchored
        ('model!~"fraud.*"', {"model": "fraud-eu"}, False),
        ('feature=""', {}, True),  # a missing label is the empty string
        (r'summary="a \"quoted\" word"', {"summary": 'a "quoted" word'}, True),
    ],
)
def test_matchers(text: str, labels: dict[str, str], hit: bool) -> None:
    assert Matcher.parse(text).matches(labels) is hit


@pytest.mark.parametrize("bad", ["severity", "1x=y", "a=~(", 'a="b'])
def test_bad_matchers_are_errors(bad: str) -> None:
    with pytest.raises(ValueError, match=r"matcher|regex"):
        Matcher.parse(bad)


def test_brace_form_holds_several_matchers() -> None:
    got = parse_matchers(['{severity="critical", model=~"a,b"}'])
    assert got == (Matcher("severity", "=", "critical"), Matcher("model", "=~", "a,b"))


TREE: dict[str, Any] = {
    "receiver": "chat",
    "routes": [
        {"matchers": ['severity="critical"'], "receiver": "pager", "continue": True},
        {
            "matchers": ['model=~"fraud.*"'],
            "receiver": "fraud-team",
            "routes": [
                {"matchers": ['alertname="DataQuality"'], "receiver": "data-team"},
                {"matchers": ['flapping="true"']},  # inherits fraud-team
            ],
        },
        {"matchers": ['alertname="DataQuality"'], "receiver": "data-team"},
    ],
}
RECEIVERS = ["chat", "pager", "fraud-team", "data-team"]


def test_tree_descends_continues_and_inherits() -> None:
    tree = RouteSettings.model_validate(TREE).build()
    assert tree.receivers({"severity": "warning", "model": "churn"}) == ["chat"]
    assert tree.receivers({"severity": "critical", "model": "churn"}) == ["pager"]
    assert tree.receivers(
        {"severity": "critical", "model": "fraud", "alertname": "DataQuality"}
    ) == ["pager", "data-team"]
    assert tree.receivers({"model": "fraud", "flapping": "true"}) == ["fraud-team"]
    assert tree.receivers({"model": "churn", "alertname": "DataQuality"}) == ["data-team"]


def _am_config(tree: dict[str, Any], receivers: list[str]) -> dict[str, Any]:
    return {
        "route": tree,
        "receivers": [
            {"name": n, "webhook_configs": [{"url": f"http://127.0.0.1:1/{n}"}]} for n in receivers
        ],
    }


label_sets = st.fixed_dictionaries(
    {},
    optional={
        "severity": st.sampled_from(["critical", "warning", "info"]),
        "model": st.sampled_from(["fraud", "fraud-eu", "churn"]),
        "alertname": st.sampled_from(["DataQuality", "FeatureDrift"]),
        "flapping": st.just("true"),
    },
)


@settings(max_examples=25, deadline=None)
@given(labels=label_sets)
def test_same_receivers_as_amtool(labels: dict[str, str], tmp_path_factory: Any) -> None:
    path = tmp_path_factory.getbasetemp() / "routing-am.yml"
    path.write_text(yaml.safe_dump(_am_config(TREE, RECEIVERS)))
    out = subprocess.run(
        ["amtool", "config", "routes", "test", f"--config.file={path}"]
        + [f"{k}={v}" for k, v in labels.items()],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    ours = RouteSettings.model_validate(TREE).build().receivers(labels)
    assert ours == out.split(","), (labels, out)


def test_the_deploy_config_routes_critical_to_the_pager() -> None:
    config = yaml.safe_load((REPO_ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
    route = config["route"]
    tree = RouteSettings.model_validate(
        {"receiver": route["receiver"], "routes": [
            {"receiver": r["receiver"], "matchers": r["matchers"]} for r in route["routes"]
        ]}
    ).build()  # fmt: skip
    assert tree.receivers({"severity": "critical", "alertname": "DataQuality"}) == ["pager"]
    assert tree.receivers({"severity": "warning", "alertname": "FeatureDrift"}) == ["chat"]


def test_settings_reject_unknown_and_duplicate_receivers() -> None:
    log: dict[str, Any] = {"log": {}}
    with pytest.raises(ValidationError, match="unknown receivers: nope"):
        NotificationSettings.model_validate(
            {"receivers": [{"name": "a", **log}], "route": {"receiver": "nope"}}
        )
    with pytest.raises(ValidationError, match="duplicate receiver names: a"):
        NotificationSettings.model_validate(
            {"receivers": [{"name": "a", **log}, {"name": "a", **log}]}
        )
    with pytest.raises(ValidationError, match="exactly one of alertmanager, webhook or log"):
        NotificationSettings.model_validate({"receivers": [{"name": "a"}]})
    with pytest.raises(ValidationError, match="root route needs a receiver"):
        NotificationSettings.model_validate({"receivers": [{"name": "a", **log}], "route": {}})
    with pytest.raises(ValidationError, match="invalid matcher"):
        RouteSettings.model_validate({"receiver": "a", "matchers": ["nonsense"]})
    with pytest.raises(ValidationError, match="extra"):
        NotificationSettings.model_validate({"recievers": []})


def test_defaults_send_nothing() -> None:
    ns = NotificationSettings()
    assert ns.receivers == ()
    assert ns.flapping.enabled
    assert (ns.flapping.low_threshold, ns.flapping.high_threshold) == (5.0, 20.0)
    assert ns.delivery.queue_capacity == 10_000


def t(state: AlertState, labels: dict[str, str], fp: str = "f1") -> Transition:
    return Transition(state, labels["alertname"], labels, {"summary": "S."}, 0.0, None, 0, fp)


def test_router_sends_to_routed_receivers_with_runbook_and_generator_url() -> None:
    tree = RouteSettings.model_validate(TREE).build()
    router = Router(
        tree,
        config=RouterConfig(
            runbook_base_url="https://runbooks.example/",
            external_url="http://dw.example:9464/",
            transient_receivers=frozenset({"chat"}),
        ),
    )
    labels = {"alertname": "DataQuality", "severity": "critical", "model": "fraud"}
    notes = router.route_transitions([t(AlertState.FIRING, labels)])
    assert [n.receiver for n in notes] == ["pager", "data-team"]
    assert notes[0].annotations["runbook_url"] == "https://runbooks.example/DataQuality.md"
    assert notes[0].generator_url == "http://dw.example:9464/alerts/f1"
    transient = {"alertname": "FeatureDrift", "severity": "warning", "model": "churn"}
    notes = router.route_transitions([t(AlertState.TRANSIENT, transient, "f2")])
    assert [(n.receiver, n.kind) for n in notes] == [("chat", NoticeKind.TRANSIENT)]
    notes = router.route_transitions([t(AlertState.TRANSIENT, labels, "f3")])
    assert notes == []  # pager and data-team are not told about transients
    assert router.transients == {"FeatureDrift": 1, "DataQuality": 1}


def test_route_without_matchers_matches_everything() -> None:
    assert Route("x").receivers({}) == ["x"]


def test_credentials_in_urls_are_refused() -> None:
    with pytest.raises(ValidationError, match="not in the url"):
        NotificationSettings.model_validate(
            {"receivers": [{"name": "a", "alertmanager": {"urls": ["http://u:p@am:9093"]}}]}
        )
