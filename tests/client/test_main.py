"""``python -m monitor.client`` (:mod:`monitor.client.__main__`), and the package's promise to
need only the client's dependencies.

The isolation tests run the client in a fresh interpreter whose ``sitecustomize`` installs an
import hook that refuses the worker's dependencies (Faust, aiokafka, River, numpy, scipy,
pydantic, msgspec, prometheus_client, the OpenTelemetry SDK and exporters, PyYAML, tqdm) and
every ``monitor`` module outside ``monitor.client`` but the kafka-python socket patch, exactly
as if they were not installed. Only kafka-python, crc32c, orjson and opentelemetry-api (the
``client`` extra in ``pyproject.toml``) stay importable.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.client.__main__ import main
from tests.client.fake_kafka import FakeKafka

ROOT = Path(__file__).resolve().parents[2]

# What the client may not import: the worker's dependencies, the test-only libraries, and any
# monitor module but the client package and the socket patch of kafka-python it applies (with
# the stdlib-only wrap helper it uses).
BLOCKER = textwrap.dedent(
    """
    import importlib.abc
    import sys

    BLOCKED = {
        "aiokafka", "faust", "hypothesis", "mode", "msgspec", "numpy", "prometheus_client",
        "pydantic", "pydantic_core", "pytest", "river", "scipy", "tqdm", "yaml",
    }
    BLOCKED_PREFIXES = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto")
    MONITOR_ALLOWED = ("monitor", "monitor.client", "monitor.kafka_sockets", "monitor.patching")


    def blocked(name):
        top = name.partition(".")[0]
        if top in BLOCKED or name.startswith(BLOCKED_PREFIXES):
            return True
        if top == "monitor":
            return not (name in MONITOR_ALLOWED or name.startswith("monitor.client."))
        return False


    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if blocked(name):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None


    sys.meta_path.insert(0, NotInstalled())
    """
)


def run_isolated(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python *args`` in a fresh interpreter where only the client's dependencies import."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    env.pop("PYTHONSTARTUP", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_blocker_refuses_worker_modules(tmp_path: Path) -> None:
    """The hook works: without it the isolation tests below would prove nothing."""
    for module in ("numpy", "faust", "pydantic", "opentelemetry.sdk", "monitor.pipeline"):
        out = run_isolated(tmp_path, "-c", f"import {module}")
        assert out.returncode == 1
        assert f"No module named '{module}' (blocked)" in out.stderr


def test_help_runs_with_only_the_client_dependencies(tmp_path: Path) -> None:
    out = run_isolated(tmp_path, "-m", "monitor.client", "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m monitor.client")
    assert "--bootstrap-servers" in out.stdout and "--sasl-password-file" in out.stdout


def test_logging_to_the_double_with_only_the_client_dependencies(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys

        import orjson

        from monitor.client import EventLogger
        from monitor.client.__main__ import main
        from tests.client.fake_kafka import FakeKafka

        kafka = FakeKafka()
        logger = EventLogger("127.0.0.1:9", model="fraud", model_version="v1",
                             producer_factory=kafka.factory)
        event_id = logger.log_prediction({"amount": 12.5, "country": "DE"}, 0.25)
        logger.log_label(event_id, "legit")
        assert logger.close(timeout=10)
        code = main(["--model", "churn", "--model-version", "v2", "--count", "2"],
                     producer_factory=kafka.factory)
        loaded = sorted(m for m in sys.modules if m.partition(".")[0] == "monitor")
        report = {"code": code, "events": kafka.events(), "monitor_modules": loaded}
        sys.stdout.write("REPORT " + orjson.dumps(report).decode() + "\\n")
        """
    )
    out = run_isolated(tmp_path, "-c", script)
    assert out.returncode == 0, out.stderr
    report = orjson.loads(out.stdout.rsplit("REPORT ", 1)[1])
    assert report["code"] == 0
    events = report["events"]
    assert [(e["model"], "label" in e) for e in events] == [
        ("fraud", False),
        ("fraud", True),
        ("churn", False),
        ("churn", False),
    ]
    assert events[0]["features"] == {"amount": 12.5, "country": "DE"}
    assert events[1]["event_id"] == events[0]["event_id"] and events[1]["label"] == "legit"
    assert all(m == "monitor" or m.startswith("monitor.client") for m in report["monitor_modules"])


def test_real_producer_path_imports_with_only_the_client_dependencies(tmp_path: Path) -> None:
    """No producer factory: kafka-python's producer and the socket patch load; with no broker
    listening, the command reports the connect error and exits 1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the command runs: nothing listens
    out = run_isolated(
        tmp_path,
        "-m",
        "monitor.client",
        "--bootstrap-servers",
        f"127.0.0.1:{port}",
        "--model",
        "fraud",
        "--model-version",
        "v1",
        "--timeout",
        "1",
    )
    assert out.returncode == 1, out.stderr
    report = orjson.loads(out.stdout)
    assert report["delivered"] is False
    assert report["stats"]["logged"] == 1 and report["stats"]["sent"] == 0
    assert report["stats"]["last_error"].startswith("connect: ConnectionError: no broker")


# ---------------------------------------------------------------------------- in process


def report_of(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(capsys.readouterr().out)
    return out


def test_logs_count_events_and_labels_and_reports(
    kafka: FakeKafka, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", "fraud", "--model-version", "v3", "--topic", "preds", "--count", "3"]
    argv += ["--features", '{"x": 1.5}', "--prediction", "0.75", "--label", '"fraud"']
    argv += ["--latency-ms", "4.5", "--labels-topic", "truth"]
    assert main(argv, producer_factory=kafka.factory) == 0
    report = report_of(capsys)
    predictions, labels = kafka.events("preds"), kafka.events("truth")
    assert [e["event_id"] for e in predictions] == report["event_ids"]
    assert [e["event_id"] for e in labels] == report["event_ids"]
    assert all(e["features"] == {"x": 1.5} and e["prediction"] == 0.75 for e in predictions)
    assert all(e["latency_ms"] == 4.5 and e["model_version"] == "v3" for e in predictions)
    assert all(e["label"] == "fraud" for e in labels)
    assert report["delivered"] is True
    assert report["stats"]["sent"] == 6 and report["stats"]["buffered"] == 0
    assert kafka.configs[0]["client_id"] == "driftwatch-client-check"


def test_undelivered_events_exit_1(kafka: FakeKafka, capsys: pytest.CaptureFixture[str]) -> None:
    kafka.down = True
    argv = ["--model", "fraud", "--model-version", "v1", "--timeout", "0.2"]
    assert main(argv, producer_factory=kafka.factory) == 1
    report = report_of(capsys)
    assert report["delivered"] is False
    assert report["stats"]["last_error"] == "connect: ConnectionError: broker down"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model-version", "v1"], "--model"),
        (["--model", "m", "--model-version", "v1", "--count", "0"], "--count"),
        (["--model", "m", "--model-version", "v1", "--features", "{"], "not JSON"),
        (["--model", "m", "--model-version", "v1", "--label", "[1]"], "--label"),
        (["--model", "m", "--model-version", "v1", "--topic", "a b"], "topic"),
        (["--model", "m", "--model-version", "v1", "--sasl-mechanism", "PLAIN"], "sasl"),
    ],
)
def test_usage_errors_exit_2(
    kafka: FakeKafka, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv, producer_factory=kafka.factory)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert kafka.configs == []
