"""Kafka security settings without a broker: where the password comes from, TLS files that do
not load, what the EventLogger is given, and the start-up check when no broker answers. The
checks against a real secured broker are in tests/test_kafka_secured.py."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from monitor.config import ConfigError, KafkaConfig
from monitor.kafka_probe import check_access
from monitor.kafka_security import Secret, event_logger_options, sasl_password, ssl_context


def scram(**extra: object) -> KafkaConfig:
    return KafkaConfig.model_validate(
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "alice",
            "sasl_password_env": "DW_UNIT_PASSWORD",
            **extra,
        }
    )


def test_the_password_comes_from_the_named_variable_and_hides_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DW_UNIT_PASSWORD", "s3cret value")
    secret = sasl_password(scram())
    assert secret == Secret("s3cret value")
    assert "s3cret" not in repr(secret) and "s3cret" not in str(secret)
    assert "s3cret" not in f"{secret!r} {secret}"


def test_a_password_file_loses_only_its_line_end(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text(" with spaces \r\n", encoding="utf-8")
    secret = sasl_password(scram(sasl_password_file=str(path)))
    assert secret is not None and secret.value == " with spaces "


def test_a_missing_password_names_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DW_UNIT_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match=r"DW_UNIT_PASSWORD or kafka\.sasl_password_file"):
        sasl_password(scram())
    with pytest.raises(ConfigError, match=r"^kafka.sasl_password_file: cannot read /nonexistent"):
        sasl_password(scram(sasl_password_file="/nonexistent/pw"))


def test_tls_files_that_do_not_load_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"^kafka.ssl_cafile: cannot load .*not-a-cert.pem"):
        ssl_context(scram(ssl_cafile=str(bad)))
    key = tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-out", str(key)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"^kafka.ssl_certfile/ssl_keyfile: cannot load") as err:
        ssl_context(scram(ssl_certfile=str(bad), ssl_keyfile=str(key)))
    body = key.read_text().splitlines()[1]
    assert body not in str(err.value)
    with pytest.raises(ConfigError, match=r"kafka\.ssl_keyfile is set but kafka\.ssl_certfile"):
        ssl_context(scram(ssl_keyfile=str(key)))


def test_the_event_logger_is_told_where_the_password_is_not_what_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DW_UNIT_PASSWORD", "s3cret")
    options = event_logger_options(scram(ssl_cafile="/ca.pem"))
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "alice",
        "sasl_password_file": None,
        "sasl_password_env": "DW_UNIT_PASSWORD",
        "ssl_cafile": "/ca.pem",
        "ssl_certfile": None,
        "ssl_keyfile": None,
    }
    from monitor.client import EventLogger

    logger = EventLogger(**options)  # no event logged: no producer is made
    assert logger._producer_settings()["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(logger)
    logger.close(timeout=0)


def test_the_start_up_check_leaves_an_unreachable_broker_to_the_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DW_UNIT_PASSWORD", "s3cret")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        check_access(scram(bootstrap_servers=f"127.0.0.1:{port}"))
