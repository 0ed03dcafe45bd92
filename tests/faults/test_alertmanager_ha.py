"""An Alertmanager HA pair with one member killed with SIGKILL for 60 s (issue 16, fault suite):
the worker sends every alert to both members, keeps the firing alert alive on the survivor
throughout the outage, counts its failed sends to the dead one and stays ready; once that one is
back (same storage and cluster flags) it holds the alert again, with its original ``startsAt``.

Alertmanager does not gossip alerts between members, only silences and the notification log,
so the restarted member learns the alert from driftwatch's re-sends alone."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.scenarios.simulate import generate
from tests.alertmanager_server import ClusterPeer, active_alerts, free_port
from tests.kafka_broker import KafkaBroker
from tests.worker_proc import Topics, Worker, envelopes, produce, readyz, until

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

OUTAGE = 60.0  # the number
RESEND = 2.0  # the lease on each Alertmanager is 4 x RESEND: renewed many times in the outage
MAX_BACKOFF = 3.0  # so the returning member gets the alert within seconds
FIRST = 30_000  # events before the outage: enough for the drift alert to fire
TOTAL = 42_000  # the rest arrives during the outage


def notification_counters(port: int) -> dict[str, float]:
    """``driftwatch_notifications_*_total{receiver="am"}`` from the worker's ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        s.name.removeprefix("driftwatch_notifications_"): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("driftwatch_notifications_") and s.labels.get("receiver") == "am"
    }


def amtool_alerts(am: ClusterPeer) -> list[dict[str, Any]]:
    """``amtool alert query alertname=FeatureDrift`` against one member."""
    url = f"--alertmanager.url={am.url}"
    out = subprocess.run(
        ["amtool", "alert", "query", "-o", "json", url, "alertname=FeatureDrift"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return list(json.loads(out.stdout))


def test_one_member_of_the_pair_down_60_s(
    kafka_broker: KafkaBroker, alertmanager_pair: list[ClusterPeer], tmp_path: Path
) -> None:
    down, survivor = alertmanager_pair
    lines = list(generate("abrupt-shift", TOTAL, 8).lines())
    topics = Topics.fresh("amha")
    topics.create(kafka_broker.bootstrap, 1)
    port = free_port()
    cfg = topics.config(
        tmp_path / "monitor.yaml",
        kafka_broker.bootstrap,
        1,
        extra=(
            f"metrics:\n  listen: 127.0.0.1:{port}\n"
            "notifications:\n  receivers:\n    - name: am\n      alertmanager:\n"
            f"        urls: ['{down.url}', '{survivor.url}']\n"
            f"        resend_interval: {RESEND}s\n"
            f"  delivery:\n    initial_backoff: 0.5s\n    max_backoff: {MAX_BACKOFF}s\n"
        ),
    )
    w = Worker(cfg, tmp_path, "w").start()
    try:
        w.wait_for(lambda s: "messages" in s)
        produce(kafka_broker.bootstrap, topics.predictions, envelopes(lines[:FIRST], 250))
        fired = {
            am.url: until(functools.partial(active_alerts, am, "FeatureDrift"), 180, "the alert")
            for am in (down, survivor)
        }
        ((first,), (second,)) = fired.values()
        assert first["startsAt"] == second["startsAt"]
        assert first["fingerprint"] == second["fingerprint"]
        starts = first["startsAt"]
        until(lambda: readyz(port) == 200, 30, "the worker ready before the outage")
        before = notification_counters(port)

        down.kill()
        killed = time.monotonic()
        polls = 0
        sent = FIRST
        while (elapsed := time.monotonic() - killed) < OUTAGE:
            # Input goes on in the outage: a batch every 10 s.
            if sent < TOTAL and elapsed >= (sent - FIRST) / 2_000 * 10:
                chunk = lines[sent : sent + 2_000]
                produce(kafka_broker.bootstrap, topics.predictions, envelopes(chunk, 250))
                sent += len(chunk)
            (alive,) = active_alerts(survivor, "FeatureDrift")  # present throughout
            assert alive["startsAt"] == starts
            assert readyz(port) == 200
            assert down.pid() is None
            polls += 1
            time.sleep(0.5)
        assert sent == TOTAL and polls >= OUTAGE / 2  # the checks above ran through the outage
        during = notification_counters(port)

        down.start()
        (back,) = until(
            lambda: active_alerts(down, "FeatureDrift"), MAX_BACKOFF + RESEND + 10, "re-send"
        )
        assert back["startsAt"] == starts
        for am in (down, survivor):
            (queried,) = amtool_alerts(am)
            assert queried["startsAt"] == starts
            assert queried["fingerprint"] == first["fingerprint"]
            assert queried["status"]["state"] == "active"
        until(lambda: down.cluster_peers() == survivor.cluster_peers() == 2, 30, "the pair")

        st = w.wait_for(lambda s: s.get("events_by_stream", {}).get("fraud/v1", 0) >= TOTAL)
        assert st["events_by_stream"]["fraud/v1"] == TOTAL
        assert readyz(port) == 200
        after = notification_counters(port)
    finally:
        w.stop()
    assert w.proc is not None and w.proc.returncode == 0

    # The failed sends were counted: every retry is one request to the dead member (each is
    # logged with its URL), one every MAX_BACKOFF at most, and the survivor never failed.
    retries = re.findall(r"alerts not delivered to (\S+)", w.log.read_text())
    assert set(retries) == {down.url + "/api/v2/alerts"}
    assert during["retried_total"] - before["retried_total"] >= OUTAGE / MAX_BACKOFF - 5
    assert after["retried_total"] == len(retries)
    assert during["sent_total"] > before["sent_total"]  # the survivor's re-sends
    assert after["failed_total"] == after["dropped_total"] == 0
