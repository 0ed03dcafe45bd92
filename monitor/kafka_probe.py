"""One check of the Kafka security settings against a broker, before the worker starts.

Kafka clients treat a refused TLS handshake or a failed SASL authentication like an unreachable
broker: they retry with backoff, and the worker would wait for ever, logging connection errors
that do not say which setting is wrong. :func:`check_access` connects once to a bootstrap
server the way the worker will (TLS with ``kafka.ssl_*``, then a SASL handshake and
authentication with ``kafka.sasl_*``) and raises :class:`~monitor.config.ConfigError` naming
the setting when the broker says no: ``kafka.ssl_cafile`` for a broker certificate it does not
trust, ``kafka.ssl_certfile`` for a client certificate the broker refuses,
``kafka.sasl_mechanism`` for a mechanism the broker does not enable, and
``kafka.sasl_password_file`` / ``kafka.sasl_password_env`` for rejected credentials. The
message never holds the password.

When no bootstrap server answers at all, it returns quietly: an outage is not a configuration
error, and the worker's own connection handling reports it.
"""

from __future__ import annotations

import socket
import ssl
import struct
from typing import Final

from monitor.config import ConfigError, KafkaConfig
from monitor.kafka_security import Secret, sasl_password, ssl_context

__all__ = ["check_access"]

CONNECT_TIMEOUT_S: Final[float] = 5.0
_CLIENT_ID: Final[bytes] = b"driftwatch-probe"
_API_VERSIONS, _SASL_HANDSHAKE, _SASL_AUTHENTICATE = 18, 17, 36
_UNSUPPORTED_SASL_MECHANISM, _SASL_AUTHENTICATION_FAILED = 33, 58
_ILLEGAL_SASL_STATE = 34


class _RefusedError(Exception):
    """The broker closed the connection or answered with an error."""


def check_access(cfg: KafkaConfig) -> None:
    """Connect to the first bootstrap server that answers and authenticate as the worker will.

    Raises :class:`ConfigError` naming the ``kafka.*`` setting the broker refused; returns when
    access works, and when no bootstrap server can be reached (that is not a setting's fault).
    """
    if cfg.security_protocol == "PLAINTEXT":
        return
    ctx = ssl_context(cfg)
    password = sasl_password(cfg)
    for server in (s.strip() for s in cfg.bootstrap_servers.split(",") if s.strip()):
        host, _, port = server.rpartition(":")
        host = host.strip("[]")
        try:
            sock = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S)
        except (OSError, ValueError):
            continue
        try:
            _check(cfg, ctx, password, sock, host, server)
            return
        except OSError:
            # A time-out or a reset without a TLS or Kafka answer: as good as unreachable.
            continue
        finally:
            sock.close()


def _check(
    cfg: KafkaConfig,
    ctx: ssl.SSLContext | None,
    password: Secret | None,
    sock: socket.socket,
    host: str,
    server: str,
) -> None:
    if ctx is None:
        _exchange(cfg, password, sock, server)
        return
    try:
        conn = ctx.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        cafile = cfg.ssl_cafile or "the system's CA certificates"
        raise ConfigError(
            f"kafka.ssl_cafile: the certificate of the broker at {server} is not trusted by "
            f"{cafile}: {exc.verify_message}"
        ) from None
    except ssl.SSLEOFError:
        raise ConfigError(_not_this_protocol(cfg, server, "the TLS handshake")) from None
    except ssl.SSLError as exc:
        raise ConfigError(_tls_refused(cfg, server, exc)) from None
    # The TLS socket is a new object over the same descriptor: closing ``sock`` leaves it open.
    with conn:
        _exchange(cfg, password, conn, server)


def _exchange(
    cfg: KafkaConfig,
    password: Secret | None,
    conn: socket.socket,
    server: str,
) -> None:
    try:
        if password is None:
            _request(conn, _API_VERSIONS, 0, b"")
        else:
            _authenticate(cfg, password, conn, server)
    except ssl.SSLError as exc:
        # With TLS 1.3 the broker checks the client certificate after the handshake: its
        # refusal arrives as an alert on the first read.
        raise ConfigError(_tls_refused(cfg, server, exc)) from None
    except (_RefusedError, ConnectionError, struct.error):
        raise ConfigError(_not_this_protocol(cfg, server, "set-up")) from None


def _not_this_protocol(cfg: KafkaConfig, server: str, during: str) -> str:
    return (
        f"kafka.security_protocol: the broker at {server} closed the connection during {during} "
        f"without saying why; is it a {cfg.security_protocol} listener?"
    )


def _tls_refused(cfg: KafkaConfig, server: str, exc: ssl.SSLError) -> str:
    reason = exc.reason or str(exc)
    if "CERTIFICATE" not in str(reason).upper():
        return _not_this_protocol(cfg, server, f"TLS ({reason})")
    if cfg.ssl_certfile is None:
        return (
            f"kafka.ssl_certfile: the broker at {server} refused the TLS connection ({reason}); "
            "it may require a client certificate, and kafka.ssl_certfile is not set"
        )
    return (
        f"kafka.ssl_certfile: the broker at {server} refused the TLS connection with the client "
        f"certificate {cfg.ssl_certfile} ({reason}); is it signed by a CA the broker trusts?"
    )


def _authenticate(cfg: KafkaConfig, password: Secret, conn: socket.socket, server: str) -> None:
    mechanism = cfg.sasl_mechanism or ""
    body = _request(conn, _SASL_HANDSHAKE, 1, _string(mechanism.encode()))
    error, count = struct.unpack_from(">hi", body)
    if error in (_UNSUPPORTED_SASL_MECHANISM, _ILLEGAL_SASL_STATE):
        offered, at = [], 6
        for _ in range(max(count, 0)):
            (n,) = struct.unpack_from(">h", body, at)
            offered.append(body[at + 2 : at + 2 + n].decode(errors="replace"))
            at += 2 + n
        if not offered:
            raise ConfigError(
                f"kafka.security_protocol: the broker at {server} takes no SASL there; is it a "
                f"{cfg.security_protocol} listener?"
            )
        raise ConfigError(
            f"kafka.sasl_mechanism: the broker at {server} does not enable {mechanism} "
            f"(it offers {', '.join(offered)})"
        )
    if error:
        raise _RefusedError(f"SASL handshake error code {error}")
    user = cfg.sasl_username or ""
    if mechanism == "PLAIN":
        _sasl_round(cfg, conn, server, b"\0" + user.encode() + b"\0" + password.value.encode())
        return
    from kafka.net.sasl.scram import ScramClient

    scram = ScramClient(user, password.value, mechanism)
    reply = _sasl_round(cfg, conn, server, scram.first_message())
    try:
        scram.process_server_first_message(reply)
    except (ValueError, KeyError) as exc:
        raise _RefusedError(f"unexpected SCRAM message: {exc}") from None
    reply = _sasl_round(cfg, conn, server, scram.final_message())
    try:
        scram.process_server_final_message(reply)
    except (ValueError, KeyError):
        raise ConfigError(
            f"kafka.sasl_mechanism: the broker at {server} did not prove that it knows the "
            f"{mechanism} credentials of user {user!r}"
        ) from None


def _sasl_round(cfg: KafkaConfig, conn: socket.socket, server: str, data: bytes) -> bytes:
    body = _request(conn, _SASL_AUTHENTICATE, 1, struct.pack(">i", len(data)) + data)
    (error,) = struct.unpack_from(">h", body)
    at = 2
    (n,) = struct.unpack_from(">h", body, at)
    message = body[at + 2 : at + 2 + n].decode(errors="replace") if n >= 0 else ""
    at += 2 + max(n, 0)
    if error == _SASL_AUTHENTICATION_FAILED:
        source = (
            f"kafka.sasl_password_file ({cfg.sasl_password_file})"
            if cfg.sasl_password_file
            else f"kafka.sasl_password_env (${cfg.sasl_password_env})"
        )
        raise ConfigError(
            f"{source}: the broker at {server} refused the {cfg.sasl_mechanism} credentials of "
            f"user {cfg.sasl_username!r} (wrong user name or password; kafka.sasl_username)"
        )
    if error:
        raise _RefusedError(f"SASL authentication error code {error}: {message}")
    (n,) = struct.unpack_from(">i", body, at)
    return body[at + 4 : at + 4 + max(n, 0)]


def _string(value: bytes) -> bytes:
    return struct.pack(">h", len(value)) + value


def _request(conn: socket.socket, api_key: int, version: int, body: bytes) -> bytes:
    """Send one request (header v1) and return the response body after the correlation id."""
    payload = struct.pack(">hhi", api_key, version, 1) + _string(_CLIENT_ID) + body
    conn.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _read(conn, 4))
    return _read(conn, size)[4:]


def _read(conn: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk:
            raise _RefusedError("connection closed by the broker")
        out += chunk
    return bytes(out)
