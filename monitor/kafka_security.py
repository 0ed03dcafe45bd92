"""Kafka client security from settings: TLS context and SASL credentials.

Secrets come from the environment or a file, never from the settings file, and are never
logged (:class:`Secret` hides its value in ``repr``).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.config import ConfigError, KafkaConfig


@dataclass(frozen=True)
class Secret:
    """A string that does not show itself in logs or tracebacks."""

    value: str

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def sasl_password(cfg: KafkaConfig) -> Secret | None:
    """The SASL password from ``sasl_password_file`` or the ``sasl_password_env`` variable."""
    if cfg.sasl_mechanism is None:
        return None
    if cfg.sasl_password_file:
        try:
            # Only the line end is stripped, as the EventLogger does: spaces may be part of it.
            text = Path(cfg.sasl_password_file).read_text(encoding="utf-8")
            return Secret(text.rstrip("\r\n"))
        except OSError as exc:
            raise ConfigError(
                f"kafka.sasl_password_file: cannot read {cfg.sasl_password_file}: "
                f"{exc.strerror or exc}"
            ) from exc
    value = os.environ.get(cfg.sasl_password_env)
    if not value:
        raise ConfigError(
            f"kafka.sasl_mechanism is {cfg.sasl_mechanism} but no password: set the environment "
            f"variable {cfg.sasl_password_env} or kafka.sasl_password_file"
        )
    return Secret(value)


def ssl_context(cfg: KafkaConfig) -> ssl.SSLContext | None:
    """A TLS context for SSL / SASL_SSL, verifying the broker with ``ssl_cafile`` if given."""
    if cfg.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    if cfg.ssl_keyfile and not cfg.ssl_certfile:
        raise ConfigError("kafka.ssl_keyfile is set but kafka.ssl_certfile is not")
    try:
        ctx = ssl.create_default_context(cafile=cfg.ssl_cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"kafka.ssl_cafile: cannot load {cfg.ssl_cafile}: {_reason(exc)}"
        ) from None
    if cfg.ssl_certfile:
        try:
            ctx.load_cert_chain(cfg.ssl_certfile, cfg.ssl_keyfile)
        except (OSError, ssl.SSLError) as exc:
            # Named by path only: the message of a key that fails to load must not quote it.
            files = cfg.ssl_certfile + (f" and {cfg.ssl_keyfile}" if cfg.ssl_keyfile else "")
            raise ConfigError(
                f"kafka.ssl_certfile/ssl_keyfile: cannot load {files}: {_reason(exc)}"
            ) from None
    return ctx


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return str(exc.strerror or exc)


def event_logger_options(cfg: KafkaConfig) -> dict[str, Any]:
    """:class:`monitor.client.EventLogger` keyword arguments for the security settings of
    ``cfg`` (``driftwatch simulate --to`` publishes with the worker's settings file). The
    password is named (file or variable), not passed: the logger reads it itself."""
    return {
        "security_protocol": cfg.security_protocol,
        "sasl_mechanism": cfg.sasl_mechanism,
        "sasl_username": cfg.sasl_username,
        "sasl_password_file": cfg.sasl_password_file,
        "sasl_password_env": cfg.sasl_password_env,
        "ssl_cafile": cfg.ssl_cafile,
        "ssl_certfile": cfg.ssl_certfile,
        "ssl_keyfile": cfg.ssl_keyfile,
    }
