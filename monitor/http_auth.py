"""Bearer-token authentication and TLS for the metrics, health and status server.

With ``metrics.auth.bearer_token`` set, every path of :class:`~monitor.http_server.MonitorServer`
but the probes ``/healthz`` and ``/readyz`` requires ``Authorization: Bearer <token>`` (what
Prometheus sends with ``authorization.credentials_file``); anything else gets ``401`` with
``WWW-Authenticate: Bearer``, before the path is even looked at.

A browser cannot add that header by itself, so the status page has a sign-in form: ``GET
/login`` shows it (so does any ``401`` answer to a browser), ``POST /login`` with the token sets
a session cookie and redirects to the page, whose refreshes then carry the cookie. The cookie
holds an expiry time and an HMAC-SHA256 of it keyed with the token: it never contains the
token, is valid ``SESSION_SECONDS`` (12 h) on every worker sharing the token, and stops working
when the token changes. It is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other
site's page can make the browser send it) and, when the server speaks TLS, ``Secure``. The token
is never taken from a URL (URLs end up in histories and access logs).

Tokens and cookies are compared with :func:`hmac.compare_digest`; neither they nor the
``Authorization`` and ``Cookie`` headers are ever logged.

With ``metrics.tls``, :class:`TLSMixin` makes the standard library's server speak HTTPS: each
connection's handshake runs in its own request thread (bounded by ``HANDSHAKE_SECONDS``), so a
client that connects and stays silent holds no other request up. TLS 1.2 is the minimum.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from monitor.config import ConfigError, MetricsConfig, MetricsTLSConfig

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("driftwatch.http")

#: Paths that stay open for orchestrators' probes.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
#: The sign-in form of the status page.
LOGIN_PATH = "/login"
#: The session cookie's name.
COOKIE = "driftwatch_session"
#: How long a browser's sign-in lasts.
SESSION_SECONDS = 12 * 3600
#: The largest sign-in form body read.
MAX_FORM_BYTES = 8192
#: A TLS handshake (and then each read of a request) may take this long.
HANDSHAKE_SECONDS = 10.0

_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>driftwatch: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px system-ui,sans-serif;margin:4em auto;max-width:26em;color:#222}}
input{{font:inherit;padding:.4em;width:100%;box-sizing:border-box;margin:.5em 0}}
.error{{color:#c92a2a}}</style></head>
<body><h1>driftwatch</h1><p>This server requires its bearer token
(<code>metrics.auth.bearer_token</code>).</p>{error}
<form class="login" method="post" action="{action}">
<label>Token <input type="password" name="token" autocomplete="current-password" autofocus>
</label><input type="submit" value="Sign in"></form></body></html>
"""


class BearerAuth:
    """Checks requests against one bearer token (see the module docstring).

    Parameters
    ----------
    token
        The token (``metrics.auth.bearer_token``, read once at start).
    secure_cookie
        Mark the session cookie ``Secure`` (the server speaks TLS).
    clock
        Seconds since the epoch (tests).
    """

    def __init__(
        self, token: str, *, secure_cookie: bool, clock: Callable[[], float] = time.time
    ) -> None:
        if not token:
            raise ValueError("empty bearer token")
        self._token = token.encode()
        self.secure_cookie = secure_cookie
        self.clock = clock

    def __repr__(self) -> str:
        return f"BearerAuth(token='***', secure_cookie={self.secure_cookie})"

    def guard(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes] | None:
        """``None`` when the request may go on; else the answer to send (the sign-in form, or
        ``401``)."""
        path = environ.get("PATH_INFO", "")
        if path in OPEN_PATHS:
            return None
        if path == LOGIN_PATH:
            return self._login(environ, start_response)
        if self.allows(environ):
            return None
        log.debug("401 for %s %s", environ.get("REQUEST_METHOD"), path)
        return self._deny(environ, start_response)

    def allows(self, environ: WSGIEnvironment) -> bool:
        """The request carries the token, or a valid session cookie."""
        scheme, _, presented = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer":
            # WSGI headers are latin-1 strings: back to the bytes the client sent.
            return hmac.compare_digest(presented.strip().encode("latin-1", "replace"), self._token)
        return self._valid_cookie(environ.get("HTTP_COOKIE", ""))

    def session_cookie(self) -> str:
        """A ``Set-Cookie`` value for a browser that just signed in."""
        expires = int(self.clock()) + SESSION_SECONDS
        attrs = f"Max-Age={SESSION_SECONDS}; HttpOnly; SameSite=Strict"
        if self.secure_cookie:
            attrs += "; Secure"
        return f"{COOKIE}={expires}.{self._mac(expires)}; {attrs}"

    def _mac(self, expires: int) -> str:
        msg = f"driftwatch status page session until {expires}".encode()
        return hmac.new(self._token, msg, hashlib.sha256).hexdigest()

    def _valid_cookie(self, header: str) -> bool:
        if COOKIE not in header:
            return False
        try:
            morsel = SimpleCookie(header).get(COOKIE)
        except CookieError:
            return False
        if morsel is None:
            return False
        expires, _, mac = morsel.value.partition(".")
        if not expires.isdigit() or int(expires) < self.clock():
            return False
        return hmac.compare_digest(mac.encode(), self._mac(int(expires)).encode())

    def _login(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD")
        if method == "GET":
            return _form(start_response, "200 OK", "login")
        if method != "POST":
            return _answer(start_response, "405 Method Not Allowed", b"GET or POST only\n")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_FORM_BYTES:
            return _answer(start_response, "413 Content Too Large", b"form too large\n")
        body = environ["wsgi.input"].read(length).decode("utf-8", "replace")
        presented = (parse_qs(body).get("token") or [""])[0].strip()
        if hmac.compare_digest(presented.encode(), self._token):
            start_response(
                "303 See Other",
                [
                    ("Location", "./"),
                    ("Set-Cookie", self.session_cookie()),
                    ("Content-Length", "0"),
                ],
            )
            return [b""]
        log.info("failed sign-in to the status page from %s", environ.get("REMOTE_ADDR", "?"))
        return _form(start_response, "401 Unauthorized", "login", "That is not the token.")

    def _deny(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        if environ.get("REQUEST_METHOD") == "GET" and "text/html" in environ.get("HTTP_ACCEPT", ""):
            # A browser: offer to sign in. The form posts to /login relative to this path, so it
            # also works behind a proxy that serves the server under a prefix.
            depth = environ.get("PATH_INFO", "/").count("/") - 1
            return _form(start_response, "401 Unauthorized", "../" * depth + "login")
        return _answer(start_response, "401 Unauthorized", b"bearer token required\n")


def _form(start_response: StartResponse, status: str, action: str, error: str = "") -> list[bytes]:
    para = f'<p class="error">{html.escape(error)}</p>' if error else ""
    body = _FORM.format(error=para, action=html.escape(action)).encode()
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]
    if status.startswith("401"):
        headers.append(("WWW-Authenticate", 'Bearer realm="driftwatch"'))
    start_response(status, headers)
    return [body]


def _answer(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    if status.startswith("401"):
        headers.append(("WWW-Authenticate", 'Bearer realm="driftwatch"'))
    start_response(status, headers)
    return [body]


def server_security(
    cfg: MetricsConfig, host: str
) -> tuple[BearerAuth | None, ssl.SSLContext | None]:
    """The server's authentication and TLS context from ``metrics.auth`` and ``metrics.tls``;
    warns when the server is reachable from other hosts (``host``) without a token."""
    auth = None
    if cfg.auth is not None:
        auth = BearerAuth(cfg.auth.bearer_token.secret(), secure_cookie=cfg.tls is not None)
    elif not _loopback(host):
        log.warning(
            "metrics.listen %s is reachable from other hosts and metrics.auth is not set: "
            "anyone who can connect reads the status page and the metrics",
            cfg.listen,
        )
    return auth, server_context(cfg.tls) if cfg.tls is not None else None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def server_context(cfg: MetricsTLSConfig) -> ssl.SSLContext:
    """The server's TLS context (``metrics.tls``): its certificate and key, TLS 1.2 or later."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.certfile, cfg.keyfile, password="")
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"metrics.tls: cannot load certfile {cfg.certfile} with keyfile {cfg.keyfile}: "
            f"{getattr(exc, 'strerror', None) or exc}"
        ) from None
    return ctx


class TLSMixin:
    """Serves each accepted connection over TLS when :attr:`ssl_context` is set (mixed into a
    ``socketserver`` server before ``ThreadingMixIn``)."""

    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        """The handshake, in the request's own thread, then the request."""
        if self.ssl_context is None:
            super().finish_request(request, client_address)  # type: ignore[misc]
            return
        assert isinstance(request, socket.socket)
        request.settimeout(HANDSHAKE_SECONDS)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:  # a port scan, a client distrusting the cert
            log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            super().finish_request(tls, client_address)  # type: ignore[misc]
        finally:
            tls.close()
