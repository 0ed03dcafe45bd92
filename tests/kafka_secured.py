"""A real Kafka broker with secured listeners, for the tests of driftwatch's Kafka security.

:func:`start_secured_broker` makes certificates with ``openssl`` (a CA, a broker certificate for
127.0.0.1 and localhost signed by it, a client certificate signed by it for mutual TLS, and a
second CA that signed nothing the broker uses) and starts a broker with ``deploy/kafka/kafka.sh``
(``KAFKA_EXTRA_CONFIG`` adds the listeners, ``KAFKA_FORMAT_ARGS`` creates the SCRAM user with
Kafka's own storage tool when the data directory is formatted). Its listeners, all on 127.0.0.1:

- ``PLAINTEXT``: for the tests' own set-up and checks (also inter-broker);
- ``SASL_SSL``: SCRAM-SHA-512 over TLS, user ``alice``;
- ``SSL``: TLS that requires a client certificate signed by the CA (mutual TLS).

The broker's key store and trust store are PEM files (``ssl.keystore.type=PEM``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from tests.kafka_broker import (
    KAFKA_SH,
    START_ATTEMPTS,
    START_TIMEOUT_S,
    KafkaBroker,
    _log_tail,
    free_ports,
    run_script,
    script_env,
)
from tests.tls_certs import make_ca, make_signed

SCRAM_USER = "alice"


@dataclass(frozen=True)
class Certificates:
    """PEM files made by :func:`make_certificates` (keys unencrypted)."""

    ca: Path
    other_ca: Path
    broker_cert: Path
    broker_key: Path
    client_cert: Path
    client_key: Path


@dataclass(frozen=True)
class SecuredBroker:
    """The broker, its secured addresses, the certificates and the SCRAM password."""

    broker: KafkaBroker
    sasl_ssl: str
    mtls: str
    certs: Certificates
    password: str

    @property
    def plaintext(self) -> str:
        return self.broker.bootstrap


def make_certificates(directory: Path) -> Certificates:
    """A CA, a broker and a client certificate signed by it, and a second, unrelated CA."""
    make_ca(directory, "ca")
    make_ca(directory, "other-ca")
    make_signed(
        directory,
        "broker",
        "ca",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    make_signed(directory, "client", "ca", "/CN=driftwatch-worker", "extendedKeyUsage=clientAuth\n")
    return Certificates(
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        broker_cert=directory / "broker.pem",
        broker_key=directory / "broker.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )


def _extra_config(ports: list[int], certs: Certificates, keystore: Path) -> str:
    plain, controller, sasl_ssl, mtls = ports
    return (
        f"listeners=PLAINTEXT://127.0.0.1:{plain},CONTROLLER://127.0.0.1:{controller},"
        f"SASL_SSL://127.0.0.1:{sasl_ssl},SSL://127.0.0.1:{mtls}\n"
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{sasl_ssl},"
        f"SSL://127.0.0.1:{mtls}\n"
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
        "SASL_SSL:SASL_SSL,SSL:SSL\n"
        "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512\n"
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
        "ssl.keystore.type=PEM\n"
        f"ssl.keystore.location={keystore}\n"
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={certs.ca}\n"
        "listener.name.ssl.ssl.client.auth=required\n"
    )


def start_secured_broker(directory: Path) -> SecuredBroker:
    """Certificates, then a broker with PLAINTEXT, SASL_SSL and mutual-TLS listeners."""
    certs = make_certificates(directory / "certs")
    keystore = directory / "certs" / "broker-keystore.pem"
    keystore.write_bytes(certs.broker_key.read_bytes() + certs.broker_cert.read_bytes())
    # Letters and digits: the storage tool's --add-scram syntax splits at ',' and ']'.
    password = "scram" + secrets.token_hex(12)
    data_dir = directory / "kafka"
    extra = directory / "secured.properties"
    failures: list[str] = []
    for _ in range(START_ATTEMPTS):
        ports = free_ports(4)
        extra.write_text(_extra_config(ports, certs, keystore), encoding="utf-8")
        env = script_env(ports[0], ports[1], data_dir)
        env["KAFKA_EXTRA_CONFIG"] = str(extra)
        env["KAFKA_FORMAT_ARGS"] = (
            f"--add-scram SCRAM-SHA-512=[name={SCRAM_USER},password={password}]"
        )
        result = run_script("start", env, timeout_s=START_TIMEOUT_S)
        if result.returncode == 0:
            pid = int((data_dir / "kafka.pid").read_text(encoding="utf-8").strip())
            broker = KafkaBroker(
                bootstrap=f"127.0.0.1:{ports[0]}",
                port=ports[0],
                controller_port=ports[1],
                data_dir=data_dir,
                pid=pid,
            )
            return SecuredBroker(
                broker=broker,
                sasl_ssl=f"127.0.0.1:{ports[2]}",
                mtls=f"127.0.0.1:{ports[3]}",
                certs=certs,
                password=password,
            )
        failures.append(result.stderr.strip())
        if "already in use" not in result.stderr and "Address already in use" not in _log_tail(
            data_dir
        ):
            break
    raise RuntimeError(
        f"{KAFKA_SH} start (secured) failed:\n"
        + "\n---\n".join(failures)
        + f"\n--- tail of {data_dir / 'kafka.log'}:\n"
        + _log_tail(data_dir)
    )
