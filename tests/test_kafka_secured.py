"""Secured Kafka for real: the worker, the EventLogger and ``simulate --to`` over SASL_SSL with
SCRAM-SHA-512 and over mutual TLS, against one broker for the module (tests/kafka_secured.py).

Events go in through a secured listener and the worker, reading through a secured listener,
counts every one exactly once and commits its offsets (to within ``max_unacked_messages`` of
the end). Refused credentials or certificates end
the worker at once with exit status 2 and one line naming the setting. No secret shows in any
output or metric.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.client import EventLogger
from monitor.config import ConfigError, KafkaConfig
from monitor.kafka_probe import check_access
from tests.kafka_broker import free_ports, stop_broker
from tests.kafka_secured import SCRAM_USER, SecuredBroker, start_secured_broker
from tests.worker_proc import Topics, Worker, committed

pytestmark = pytest.mark.kafka

PASSWORD_ENV = "DW_TEST_SCRAM_PASSWORD"
REFUSED_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    broker = start_secured_broker(tmp_path_factory.mktemp("secured"))
    try:
        yield broker
    finally:
        stop_broker(broker.broker)


def sasl_settings(b: SecuredBroker, password_file: Path | None = None, cafile: str = "") -> str:
    source = (
        f"  sasl_password_file: '{password_file}'\n"
        if password_file
        else f"  sasl_password_env: {PASSWORD_ENV}\n"
    )
    return (
        "  security_protocol: SASL_SSL\n  sasl_mechanism: SCRAM-SHA-512\n"
        f"  sasl_username: {SCRAM_USER}\n{source}"
        f"  ssl_cafile: '{cafile or b.certs.ca}'\n"
    )


def mtls_settings(b: SecuredBroker) -> str:
    return (
        f"  security_protocol: SSL\n  ssl_cafile: '{b.certs.ca}'\n"
        f"  ssl_certfile: '{b.certs.client_cert}'\n  ssl_keyfile: '{b.certs.client_key}'\n"
    )


def metrics_port() -> tuple[int, str]:
    port = free_ports(1)[0]
    return port, f"metrics:\n  listen: 127.0.0.1:{port}\n"


def secrets_of(b: SecuredBroker) -> list[str]:
    """The password and every line of the client key's body."""
    key_lines = [
        line
        for line in b.certs.client_key.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("-----")
    ]
    return [b.password, *key_lines]


def assert_no_secret(text: str, b: SecuredBroker, where: str) -> None:
    for secret in secrets_of(b):
        assert secret not in text, f"a secret appears in {where}"


def accepted_in_metrics(text: str) -> int:
    """The sum of ``driftwatch_events_accepted_total`` over its kinds."""
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("driftwatch_events_accepted_total{")
        )
    )


def wait_commit_past(b: SecuredBroker, topics: Topics, offset: int) -> int:
    """The group's committed offset of the one prediction partition, once past ``offset``."""
    deadline = time.monotonic() + 30
    found = committed(b.plaintext, topics.group, topics.predictions)
    while found <= offset and time.monotonic() < deadline:
        time.sleep(0.5)
        found = committed(b.plaintext, topics.group, topics.predictions)
    return found


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def simulate_to(
    url: str, config: Path, events: int, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "monitor.cli", "simulate", "--scenario", "steady",
            "--events", str(events), "--seed", "7", "--to", url, "--config", str(config),
            "--batch", "250",
        ],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def run_refused(config: Path, env: dict[str, str]) -> tuple[int, str, float]:
    """``driftwatch run`` that must stop by itself: exit status, output, seconds taken."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=REFUSED_WITHIN_S + 30,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def worker_config(
    b: SecuredBroker, tmp_path: Path, topics: Topics, bootstrap: str, security: str
) -> tuple[Path, int]:
    """Settings for one prediction partition, a free metrics port, and the worker checkpointing
    (and so committing) at least every 10 messages whatever the windows do."""
    topics.create(b.plaintext, 1)
    port, metrics = metrics_port()
    cfg = topics.config(
        tmp_path / "monitor.yaml",
        bootstrap,
        1,
        metrics,
        kafka_extra=security + "  max_unacked_messages: 10\n",
    )
    return cfg, port


def check_worker_counts(
    b: SecuredBroker, topics: Topics, w: Worker, port: int, events: int, messages: int
) -> None:
    """Every event counted once (status file and /metrics), the offset committed through the
    secured listener, and no secret in /metrics or the worker's output."""
    st = w.wait_for(lambda s: s.get("accepted", 0) >= events, timeout=90)
    assert st["accepted"] == events
    assert st["rejected"] == {}
    text = scrape(port)
    assert accepted_in_metrics(text) == events
    assert_no_secret(text, b, "/metrics")
    # Unacknowledged messages are bounded by max_unacked_messages (10).
    assert wait_commit_past(b, topics, messages - 11) >= messages - 10
    w.stop()
    assert w.proc is not None and w.proc.returncode == 0
    assert_no_secret(w.log.read_text(encoding="utf-8", errors="replace"), b, "the worker's output")


def test_sasl_ssl_with_the_password_from_env_counts_every_simulated_event(
    secured: SecuredBroker, tmp_path: Path, workers: list[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, secured.password)
    # At level info the Kafka clients log their connections and settings: still no secret.
    monkeypatch.setenv("DW_TEST_LOGLEVEL", "info")
    topics = Topics.fresh("sasl-env")
    cfg, port = worker_config(secured, tmp_path, topics, secured.sasl_ssl, sasl_settings(secured))
    sent = simulate_to(
        f"kafka://{secured.sasl_ssl}/{topics.predictions}", cfg, 6_000, dict(os.environ)
    )
    assert sent.returncode == 0, sent.stderr
    assert "published 6,000 events" in sent.stderr
    assert_no_secret(sent.stdout + sent.stderr, secured, "simulate --to output")

    w = Worker(cfg, tmp_path, "w").start()
    workers.append(w)
    check_worker_counts(secured, topics, w, port, 6_000, 6_000 // 250)


def test_sasl_ssl_with_the_password_from_a_file_and_the_event_logger(
    secured: SecuredBroker, tmp_path: Path, workers: list[Worker]
) -> None:
    password_file = tmp_path / "kafka-password"
    password_file.write_text(secured.password + "\n", encoding="utf-8")
    topics = Topics.fresh("sasl-file")
    cfg, port = worker_config(
        secured, tmp_path, topics, secured.sasl_ssl, sasl_settings(secured, password_file)
    )
    logger = EventLogger(
        secured.sasl_ssl,
        topics.predictions,
        model="fraud",
        model_version="v1",
        batch_size=300,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=SCRAM_USER,
        sasl_password_file=password_file,
        ssl_cafile=str(secured.certs.ca),
    )
    for i in range(3_000):
        logger.log_prediction({"amount": float(i % 97), "country": "DE"}, 0.25 + (i % 50) / 100)
    assert logger.close(timeout=60), logger.stats()
    assert logger.stats()["sent"] == 3_000
    assert secured.password not in repr(logger)

    check = subprocess.run(
        [
            sys.executable, "-m", "monitor.client", "--bootstrap-servers", secured.sasl_ssl,
            "--topic", topics.predictions, "--labels-topic", topics.labels,
            "--model", "fraud", "--model-version", "v1", "--count", "5",
            "--security-protocol", "SASL_SSL", "--sasl-mechanism", "SCRAM-SHA-512",
            "--sasl-username", SCRAM_USER, "--sasl-password-env", PASSWORD_ENV,
            "--ssl-cafile", str(secured.certs.ca),
        ],
        env={**os.environ, PASSWORD_ENV: secured.password},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert '"delivered":true' in check.stdout
    assert_no_secret(check.stdout + check.stderr, secured, "python -m monitor.client output")

    w = Worker(cfg, tmp_path, "w").start()
    workers.append(w)
    check_worker_counts(secured, topics, w, port, 3_005, 3_000 // 300 + 1)


def test_mutual_tls_counts_every_event(
    secured: SecuredBroker, tmp_path: Path, workers: list[Worker]
) -> None:
    topics = Topics.fresh("mtls")
    cfg, port = worker_config(secured, tmp_path, topics, secured.mtls, mtls_settings(secured))
    sent = simulate_to(f"kafka://{secured.mtls}/{topics.predictions}", cfg, 4_000, dict(os.environ))
    assert sent.returncode == 0, sent.stderr
    assert "published 4,000 events" in sent.stderr
    w = Worker(cfg, tmp_path, "w").start()
    workers.append(w)
    check_worker_counts(secured, topics, w, port, 4_000, 4_000 // 250)


@pytest.mark.parametrize(
    ("case", "setting"),
    [
        ("wrong password from env", "kafka.sasl_password_env"),
        ("wrong password from a file", "kafka.sasl_password_file"),
        ("untrusted broker certificate", "kafka.ssl_cafile"),
        ("no client certificate", "kafka.ssl_certfile"),
    ],
)
def test_refused_credentials_end_the_worker_naming_the_setting(
    secured: SecuredBroker, tmp_path: Path, case: str, setting: str
) -> None:
    env = {**os.environ, PASSWORD_ENV: secured.password}
    wrong = "wrong" + secured.password[::-1]
    bootstrap = secured.sasl_ssl
    if case == "wrong password from env":
        env[PASSWORD_ENV] = wrong
        security = sasl_settings(secured)
    elif case == "wrong password from a file":
        password_file = tmp_path / "kafka-password"
        password_file.write_text(wrong, encoding="utf-8")
        security = sasl_settings(secured, password_file)
    elif case == "untrusted broker certificate":
        # The broker's certificate is signed by the CA, not by the one the worker trusts.
        security = sasl_settings(secured, cafile=str(secured.certs.other_ca))
    else:
        bootstrap = secured.mtls
        security = f"  security_protocol: SSL\n  ssl_cafile: '{secured.certs.ca}'\n"
    topics = Topics.fresh("refused")
    cfg = topics.config(tmp_path / "monitor.yaml", bootstrap, 1, kafka_extra=security)
    status, output, took = run_refused(cfg, env)
    assert status == 2, output
    assert took < REFUSED_WITHIN_S
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith(f"driftwatch: {setting}"), output
    for secret in (wrong, *secrets_of(secured)):
        assert secret not in output

    # simulate --to with the same settings is refused the same way.
    sent = simulate_to(f"kafka://{bootstrap}/{topics.predictions}", cfg, 10, env)
    assert sent.returncode == 2, sent.stderr
    assert sent.stderr.strip().splitlines()[-1].startswith(f"driftwatch: simulate --to: {setting}")
    for secret in (wrong, *secrets_of(secured)):
        assert secret not in sent.stdout + sent.stderr


def test_a_mechanism_the_listener_does_not_enable_is_named(
    secured: SecuredBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, secured.password)
    cfg = KafkaConfig.model_validate(
        {
            "bootstrap_servers": secured.sasl_ssl,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": SCRAM_USER,
            "sasl_password_env": PASSWORD_ENV,
            "ssl_cafile": str(secured.certs.ca),
        }
    )
    with pytest.raises(ConfigError) as err:
        check_access(cfg)
    assert str(err.value) == (
        f"kafka.sasl_mechanism: the broker at {secured.sasl_ssl} does not enable SCRAM-SHA-256 "
        "(it offers SCRAM-SHA-512)"
    )
    check_access(cfg.model_copy(update={"sasl_mechanism": "SCRAM-SHA-512"}))  # accepted


def test_a_listener_of_another_protocol_is_named(
    secured: SecuredBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, secured.password)
    tls = KafkaConfig.model_validate(
        {
            "bootstrap_servers": secured.plaintext,
            "security_protocol": "SSL",
            "ssl_cafile": str(secured.certs.ca),
        }
    )
    with pytest.raises(ConfigError, match=r"^kafka\.security_protocol: .* SSL listener\?$"):
        check_access(tls)
    sasl_on_mtls = KafkaConfig.model_validate(
        {
            "bootstrap_servers": secured.mtls,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": SCRAM_USER,
            "sasl_password_env": PASSWORD_ENV,
            "ssl_cafile": str(secured.certs.ca),
            "ssl_certfile": str(secured.certs.client_cert),
            "ssl_keyfile": str(secured.certs.client_key),
        }
    )
    with pytest.raises(ConfigError) as err:
        check_access(sasl_on_mtls)
    assert str(err.value) == (
        f"kafka.security_protocol: the broker at {secured.mtls} takes no SASL there; is it a "
        "SASL_SSL listener?"
    )
