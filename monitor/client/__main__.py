"""``python -m monitor.client``: send test events with the EventLogger, to check a host's setup.

Run it on a serving host with the settings the model server will use: it logs ``--count``
prediction events (and a label for each with ``--label``) through a real
:class:`~monitor.client.EventLogger`, waits up to ``--timeout`` seconds for Kafka to
acknowledge them, prints one JSON line with the event ids and the logger's counters, and exits
0 when every event was delivered, 1 when not (the counters' ``last_error`` says why) and 2 on a
usage error. The SASL password comes from ``--sasl-password-file`` or the environment variable
named by ``--sasl-password-env`` (``DRIFTWATCH_KAFKA_SASL_PASSWORD``), never from the command
line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from monitor.client.logger import EventLogger
from monitor.client.producer import Producer
from monitor.client.settings import PASSWORD_ENV, SASL_MECHANISMS, SECURITY_PROTOCOLS

__all__ = ["main"]

_FEATURES = '{"amount": 42.5, "country": "DE"}'
_PREDICTION = '{"score": 0.91, "label": "fraud"}'


def _json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitor.client",
        description="Log test prediction events to Kafka with the serving-side EventLogger and "
        "wait for Kafka to acknowledge them; exit 0 when all were delivered, 1 when not.",
    )
    add = parser.add_argument
    add("--bootstrap-servers", default="127.0.0.1:9092", help="host:port[,host:port...]")
    add("--topic", default="predictions", help="prediction topic (default: %(default)s)")
    add("--labels-topic", default="labels", help="label topic (default: %(default)s)")
    add("--model", required=True, help="model name (the message key)")
    add("--model-version", required=True)
    add("--features", type=_json, default=_FEATURES, help="feature mapping as JSON")
    add("--prediction", type=_json, default=_PREDICTION, help="a number, or a mapping as JSON")
    add("--latency-ms", type=float, default=None)
    add("--label", type=_json, default=None, help="also log this label (JSON) for each event")
    add("--count", type=int, default=1, help="events to log (default: %(default)s)")
    add("--batch-size", type=int, default=500, help="events per envelope (default: %(default)s)")
    add("--timeout", type=float, default=30.0, help="seconds to wait for acknowledgements")
    add("--security-protocol", choices=sorted(SECURITY_PROTOCOLS), default="PLAINTEXT")
    add("--sasl-mechanism", choices=sorted(SASL_MECHANISMS), default=None)
    add("--sasl-username", default=None)
    add(
        "--sasl-password-file",
        default=None,
        help="file holding the SASL password (else the variable --sasl-password-env names)",
    )
    add(
        "--sasl-password-env",
        default=PASSWORD_ENV,
        help="environment variable holding the SASL password (default: %(default)s)",
    )
    add("--ssl-cafile", default=None, help="CA bundle (PEM) to verify the brokers")
    add("--ssl-certfile", default=None, help="client certificate (PEM)")
    add("--ssl-keyfile", default=None, help="client key (PEM)")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    producer_factory: Callable[[Mapping[str, Any]], Producer] | None = None,
) -> int:
    """Run the command; ``producer_factory`` replaces kafka-python's producer (tests)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    if args.label is not None and not isinstance(args.label, str | bool | int | float):
        parser.error("--label must be a JSON string, boolean or number")
    try:
        logger = EventLogger(
            args.bootstrap_servers,
            args.topic,
            labels_topic=args.labels_topic,
            model=args.model,
            model_version=args.model_version,
            batch_size=args.batch_size,
            security_protocol=args.security_protocol,
            sasl_mechanism=args.sasl_mechanism,
            sasl_username=args.sasl_username,
            sasl_password_file=args.sasl_password_file,
            sasl_password_env=args.sasl_password_env,
            ssl_cafile=args.ssl_cafile,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
            client_id="driftwatch-client-check",
            producer_factory=producer_factory,
        )
    except ValueError as exc:
        parser.error(str(exc))
    ids: list[str] = []
    for _ in range(args.count):
        event_id = logger.log_prediction(args.features, args.prediction, latency_ms=args.latency_ms)
        if args.label is not None:
            logger.log_label(event_id, args.label)
        ids.append(event_id)
    delivered = logger.close(timeout=args.timeout)
    report = {"delivered": delivered, "event_ids": ids, "stats": logger.stats()}
    sys.stdout.buffer.write(orjson.dumps(report) + b"\n")
    sys.stdout.flush()
    return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main())
