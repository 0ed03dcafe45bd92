"""Checks and settings of the EventLogger: topic names, security, and the SASL password.

The constructor of :class:`~monitor.client.EventLogger` validates every parameter with these
helpers and raises ``ValueError`` naming the parameter; the SASL password is read once (argument,
file or environment variable) and held in a :class:`Secret` that never shows in ``repr``.
"""

from __future__ import annotations

import os
import re
from typing import Final

__all__ = [
    "MAX_BATCH",
    "PASSWORD_ENV",
    "PASSWORD_MECHANISMS",
    "SASL_MECHANISMS",
    "SECURITY_PROTOCOLS",
    "Secret",
    "positive_int",
    "read_password",
    "topic_name",
]

PASSWORD_ENV: Final[str] = "DRIFTWATCH_KAFKA_SASL_PASSWORD"
"""Environment variable read for the SASL password when none is given explicitly."""

MAX_BATCH: Final[int] = 65_535
"""Largest envelope the driftwatch consumer accepts (events)."""

SECURITY_PROTOCOLS: Final = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
SASL_MECHANISMS: Final = frozenset(
    {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"}
)
PASSWORD_MECHANISMS: Final = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})
TOPIC_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,249}")


class Secret:
    """A string that never shows in ``repr``/``str`` (the logger's attributes may be printed)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def topic_name(name: str, value: object) -> str:
    if not isinstance(value, str) or not TOPIC_RE.fullmatch(value) or value in {".", ".."}:
        raise ValueError(
            f"{name} must be a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -), got {value!r}"
        )
    return value


def read_password(
    mechanism: str | None,
    password: str | None,
    password_file: str | os.PathLike[str] | None,
    password_env: str = PASSWORD_ENV,
) -> Secret | None:
    """The SASL password: given, else read from ``password_file``, else from the environment
    variable ``password_env`` (``$DRIFTWATCH_KAFKA_SASL_PASSWORD`` by default)."""
    if password is not None and password_file is not None:
        raise ValueError("give sasl_password or sasl_password_file, not both")
    if password is not None:
        return Secret(password)
    if password_file is not None:
        try:
            with open(password_file, encoding="utf-8") as fh:
                return Secret(fh.read().rstrip("\r\n"))
        except OSError as exc:
            raise ValueError(
                f"sasl_password_file: cannot read {os.fspath(password_file)!r}: {exc.strerror}"
            ) from exc
    if mechanism in PASSWORD_MECHANISMS and password_env in os.environ:
        return Secret(os.environ[password_env])
    return None
