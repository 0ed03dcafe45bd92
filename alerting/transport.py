"""HTTP behind a one-method interface: the stdlib client, and an in-memory twin for tests.

``post`` returns the status and body of any HTTP answer (4xx and 5xx included) and raises
:class:`TransportError` only when no answer came (refused, reset, timeout, TLS failure), so
the caller decides what to retry. Headers may hold credentials: nothing here logs them.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from alerting.settings import HttpSettings, TlsSettings


class TransportError(Exception):
    """No HTTP answer: the connection failed, timed out or was cut."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """An HTTP answer: ``status`` and up to 64 KiB of ``body``."""

    status: int
    body: bytes = b""


class HttpTransport(Protocol):
    """Sends one POST."""

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpResponse:
        """POST ``body``; raise :class:`TransportError` if no answer came."""
        ...


_MAX_BODY = 64 * 1024


class UrllibTransport:
    """:class:`HttpTransport` over ``urllib`` (no proxies from the environment)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        self._opener = urllib.request.build_opener(*handlers)

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpResponse:
        """POST with ``urllib``; HTTP errors are answers, everything else raises."""
        req = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                return HttpResponse(int(resp.status), resp.read(_MAX_BODY))
        except urllib.error.HTTPError as exc:
            try:
                data = exc.read(_MAX_BODY)
            except OSError:
                data = b""
            finally:
                exc.close()
            return HttpResponse(int(exc.code), data)
        except (TimeoutError, urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransportError(f"POST {url}: {reason}") from exc


Handler = Callable[[str, bytes, Mapping[str, str]], HttpResponse]


class MemoryTransport:
    """In-memory :class:`HttpTransport`: ``handler(url, body, headers)`` answers (or raises
    :class:`TransportError`); every request is kept in :attr:`requests`."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler or (lambda url, body, headers: HttpResponse(200))
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpResponse:
        """Record the request and let the handler answer."""
        self.requests.append((url, body, dict(headers)))
        return self.handler(url, body, headers)


def ssl_context(tls: TlsSettings | None) -> ssl.SSLContext | None:
    """A client TLS context from the settings (None: urllib's default)."""
    if tls is None:
        return None
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file is not None:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def auth_headers(http: HttpSettings) -> dict[str, str]:
    """``Authorization`` from basic auth or a bearer token (secrets read now)."""
    import base64

    if http.basic_auth is not None:
        raw = f"{http.basic_auth.username}:{http.basic_auth.password.read()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
    if http.bearer_token is not None:
        return {"Authorization": "Bearer " + http.bearer_token.read()}
    return {}
