"""The metrics, health and status server, and :class:`Observability`, which feeds it.

``MonitorServer`` is the standard library's WSGI server (one thread per request) in a daemon
thread, bound to ``metrics.listen`` (``127.0.0.1:9464`` by default):

=================  =============================================================================
path               what
=================  =============================================================================
``/metrics``       prometheus_client's exposition app: OpenMetrics (with exemplars) when the
                   scraper asks for ``application/openmetrics-text`` (Prometheus 2.42 does),
                   else the text format 0.0.4; gzip when ``Accept-Encoding`` allows
``/healthz``       200 while the worker's event loop ticks (503 if it stalled for 30 s)
``/readyz``        200 only when the consumer has input partitions assigned, the changelog
                   recovery is over and the reference is loaded (a reference file, or warm-up
                   mode); else 503 with the reason
``/``              the status page (:mod:`monitor.status_page`)
``/api/status``    the status page's numbers as JSON
``/login``         with ``metrics.auth``: the status page's sign-in form
=================  =============================================================================

With ``metrics.auth.bearer_token`` every path but ``/healthz`` and ``/readyz`` requires the token,
and with ``metrics.tls`` the server speaks HTTPS (:mod:`monitor.http_auth`).

:class:`Observability` builds the registry, :class:`~monitor.metrics.MonitorMetrics`,
:class:`~monitor.status_page.StatusHistory` and, when ``tracing.enabled``,
:class:`~monitor.tracing.KafkaTracing` once at start-up; the pipeline gets its
:attr:`~Observability.observers`, the alert sinks its :attr:`~Observability.sinks`, and the
Kafka adapter calls :meth:`~Observability.begin` / :meth:`~Observability.alerts` /
:meth:`~Observability.end` once per message.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import CollectorRegistry, make_wsgi_app

from alerting.metrics import NotificationCollector
from alerting.notify import Notifier
from alerting.router import default_runbook_base
from alerting.types import Transition
from monitor import __version__
from monitor.broker_watch import BrokerWatch
from monitor.config import Settings
from monitor.http_auth import BearerAuth, TLSMixin, server_security
from monitor.latency_metrics import TraceRef, trace_ref
from monitor.metrics import ConsumerPosition, MonitorMetrics, probe_indices
from monitor.span_export import SpanCounts, build_provider, code_revision
from monitor.status_page import StatusHistory, render_page
from monitor.trace_context import context_from_headers
from monitor.tracing import Batch, KafkaTracing

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("driftwatch.http")

#: The documented default port of the metrics/status server.
DEFAULT_PORT = 9464
#: Plain-text answers (health, readiness, errors).
_TEXT = "text/plain; charset=utf-8"
#: /healthz fails when the worker's loop has not ticked for this long.
STALL_SECONDS = 30.0


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as a (host, port) pair.

    >>> parse_listen("127.0.0.1:9464"), parse_listen("[::1]:0")
    (('127.0.0.1', 9464), ('::1', 0))
    """
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


class _Server(TLSMixin, ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The path without its query: a token pasted into a URL stays out of the log.
        path = self.path.partition("?")[0]
        log.debug('%s "%s %s" %s %s', self.address_string(), self.command, path, code, size)


def _no_store(start_response: StartResponse) -> StartResponse:
    """``start_response`` adding ``Cache-Control: no-store`` (every answer is live state)."""

    def start(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        return start_response(status, [*headers, ("Cache-Control", "no-store")], exc_info)

    return start


class MonitorServer:
    """Serves the paths in the module docstring from a daemon thread.

    ``/metrics`` is prometheus_client's own WSGI app (:func:`prometheus_client.make_wsgi_app`):
    it negotiates the format from ``Accept`` (the text format 0.0.4, or OpenMetrics with
    exemplars), gzips when ``Accept-Encoding`` allows, and honours ``name[]`` filters. The other
    paths are a small WSGI app beside it, on the standard library's WSGI server.

    Parameters
    ----------
    listen
        ``host:port`` to bind (port 0: any free port; see :attr:`url`).
    registry
        What ``/metrics`` exposes.
    page, status
        The status page (HTML bytes) and its JSON.
    ready, healthy
        ``(ok, reason)`` for ``/readyz`` and ``/healthz``.
    auth
        Requires a bearer token on every path but the probes (``metrics.auth``).
    tls
        Serves HTTPS with this context (``metrics.tls``).
    """

    def __init__(
        self,
        listen: str,
        registry: CollectorRegistry,
        page: Callable[[], bytes],
        status: Callable[[], Mapping[str, Any]],
        ready: Callable[[], tuple[bool, str]],
        healthy: Callable[[], tuple[bool, str]] = lambda: (True, ""),
        *,
        auth: BearerAuth | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.listen = listen
        self.registry = registry
        self.page = page
        self.status = status
        self.ready = ready
        self.healthy = healthy
        self.auth = auth
        self.tls = tls
        self.metrics_app: WSGIApplication = make_wsgi_app(registry)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http(s)://host:port`` actually bound."""
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        host = str(host)
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    def start(self) -> MonitorServer:
        """Bind and serve; raises ``OSError`` when the address is taken."""
        host, port = parse_listen(self.listen)
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, port), _Handler)
        self._server.ssl_context = self.tls
        self._server.set_app(self.app)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="driftwatch-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI application of every path (usable without the server, e.g. in tests)."""
        path = environ.get("PATH_INFO", "")
        start_response = _no_store(start_response)
        try:
            if self.auth is not None:
                denied = self.auth.guard(environ, start_response)
                if denied is not None:
                    return denied
            if path == "/metrics":
                return self.metrics_app(environ, start_response)
            if environ.get("REQUEST_METHOD") != "GET":
                return _send(start_response, "405 Method Not Allowed", _TEXT, b"GET only\n")
            if path == "/healthz":
                return _check(start_response, self.healthy())
            if path == "/readyz":
                return _check(start_response, self.ready())
            if path in {"/", "/index.html"}:
                return _send(start_response, "200 OK", "text/html; charset=utf-8", self.page())
            if path == "/api/status":
                body = json.dumps(self.status(), allow_nan=False).encode()
                return _send(start_response, "200 OK", "application/json", body)
            return _send(start_response, "404 Not Found", _TEXT, b"not found\n")
        except Exception:
            log.exception("error serving %s", path)
            return _send(
                start_response,
                "500 Internal Server Error",
                _TEXT,
                b"internal error\n",
                sys.exc_info(),
            )


def _send(
    start_response: StartResponse, status: str, ctype: str, body: bytes, exc_info: Any = None
) -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))], exc_info)
    return [body]


def _check(start_response: StartResponse, result: tuple[bool, str]) -> list[bytes]:
    ok, why = result
    text = ("ok" if ok else "not ready") + (f": {why}" if why else "") + "\n"
    status = "200 OK" if ok else "503 Service Unavailable"
    return _send(start_response, status, _TEXT, text.encode())


@dataclass(slots=True)
class _Message:
    """One message in flight through the adapter."""

    topic: str
    partition: int
    offset: int
    started: float
    header: TraceRef | None
    batch: Batch | None


class Observability:
    """Metrics, traces and the status page of one driftwatch process.

    Parameters
    ----------
    settings
        ``metrics:`` (listen address, history sizes) and ``tracing:`` (OTLP export, links,
        trace URL template) are read from here.
    references_loaded
        Whether reference profiles came from a file (else they are learned from a warm-up).
    registry
        The Prometheus registry (a new one by default; never the global one).
    exporter
        Replaces the OTLP exporter (tests); tracing is on when ``tracing.enabled`` or an
        exporter is given.
    position_shift
        16 for Kafka positions (``offset << 16 | index``), 0 for replayed files.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        references_loaded: bool = False,
        registry: CollectorRegistry | None = None,
        exporter: SpanExporter | None = None,
        position_shift: int = 16,
    ) -> None:
        self.settings = settings
        self.version = __version__
        self.revision = code_revision(settings.tracing.revision)
        self.registry = registry or CollectorRegistry()
        self.started = time.time()
        notif = getattr(settings, "notifications", None)
        base = getattr(notif, "runbook_base_url", None) or default_runbook_base()
        self.history = StatusHistory(
            settings.metrics.history_windows,
            settings.metrics.recent_alerts,
            runbook_url=lambda name: f"{base}{name}.md",
        )
        self.metrics = MonitorMetrics(
            self.registry,
            version=self.version,
            revision=self.revision,
            on_window=[self.history.add_window],
            on_evict=[self.history.forget],
            max_feature_series=settings.metrics.max_feature_series,
        )
        self.references_loaded = references_loaded
        self.provider: TracerProvider | None = None
        self.span_counts: SpanCounts | None = None
        self.tracing: KafkaTracing | None = None
        cfg = settings.tracing
        if cfg.enabled or exporter is not None:
            self.provider, self.span_counts = build_provider(
                cfg, self.version, self.revision, exporter
            )
            self.tracing = KafkaTracing(
                self.provider.get_tracer("driftwatch", self.version),
                group_id=settings.kafka.group_id,
                max_links=cfg.max_links,
                alert_links=cfg.alert_links,
                trace_url=cfg.trace_url,
                position_shift=position_shift,
            )
            counts = self.span_counts
            self.metrics.watch_spans(counts.as_dict)
        self.pipeline: Any = None
        self.server: MonitorServer | None = None
        self.last_offsets: dict[tuple[str, int], int] = {}
        self.assigned = 0
        self.recovering = False
        self.heartbeat: float | None = None
        #: The worker's view of Kafka (``None`` in replay).
        self.brokers: BrokerWatch | None = None
        self._current: _Message | None = None
        self._ready: Callable[[], tuple[bool, str]] = self.ready

    # -- wiring ------------------------------------------------------------------------------------

    @property
    def observers(self) -> list[Any]:
        """Window observers for the :class:`~monitor.pipeline.Pipeline` (traces first, so the
        evidence is in place when metrics and the page see the window)."""
        return [x for x in (self.tracing, self.metrics) if x is not None]

    @property
    def sinks(self) -> list[Any]:
        """Alert sinks: alert counters and gauges, and the status page."""
        return [self.metrics, self.history]

    def attach(self, pipeline: Any, adapter: Any = None, sinks: Iterable[Any] = ()) -> None:
        """Read counters from the pipeline, the Kafka adapter and, among the alert ``sinks``,
        a :class:`~alerting.notify.Notifier` (its delivery counters, via
        :class:`~alerting.metrics.NotificationCollector`)."""
        self.pipeline = pipeline
        self.metrics.watch_pipeline(pipeline)
        self.history.tracker = pipeline.tracker
        if adapter is not None:
            self.metrics.watch_adapter(adapter)
        for sink in sinks:
            if isinstance(sink, Notifier):
                self.registry.register(NotificationCollector(sink))

    # -- per message (the Kafka adapter) ----------------------------------------------------------

    def begin(self, msg: Any, events: Sequence[Any], size: int) -> None:
        """A message is about to be processed: start its span, note its trace for exemplars."""
        header = context_from_headers(getattr(msg, "headers", None))
        batch = None
        if self.tracing is not None:
            batch = self.tracing.begin(
                msg.topic, msg.partition, msg.offset, msg.key, header, events, size
            )
        ref = trace_ref(header)
        self.metrics.batch_trace = ref
        self._current = _Message(
            msg.topic, msg.partition, msg.offset, time.perf_counter(), ref, batch
        )

    def begin_batch(
        self, msgs: Sequence[Any], events: Sequence[Any], positions: Sequence[int], size: int
    ) -> None:
        """A batch of messages of one partition is about to be processed: start its span.

        The ``traceparent`` headers of at most ``tracing.max_links`` messages, spread evenly
        over the batch, are read (for links, and without tracing for the exemplar)."""
        first, last = msgs[0], msgs[-1]
        ref = None
        batch = None
        if self.tracing is None:  # the first message's ids, for exemplars
            ref = trace_ref(context_from_headers(getattr(first, "headers", None)))
        else:
            headers = []
            for i in probe_indices(len(msgs), self.tracing.max_links):
                msg = msgs[i]
                sc = context_from_headers(getattr(msg, "headers", None))
                if sc is not None:
                    headers.append((msg.offset, msg.key, sc))
            if headers:
                ref = trace_ref(headers[0][2])
            batch = self.tracing.begin_batch(
                first.topic,
                first.partition,
                [m.offset for m in msgs],
                headers,
                events,
                positions,
                size,
            )
        self.metrics.batch_trace = ref
        self._current = _Message(
            last.topic, last.partition, last.offset, time.perf_counter(), ref, batch
        )

    def alerts(self, transitions: list[Transition]) -> list[Transition]:
        """Alert spans for the state changes; returns them with trace annotations."""
        if self.tracing is None or self.pipeline is None:
            return transitions
        return self.tracing.alert_spans(transitions, self.pipeline.streams)

    def end(self, accepted: int, rejected: int, error: BaseException | None) -> None:
        """The message is processed (or failed with ``error``)."""
        cur = self._current
        if cur is None:
            return
        self._current = None
        seconds = time.perf_counter() - cur.started
        span_ref = cur.header
        if cur.batch is not None:
            span_ref = trace_ref(cur.batch.span.get_span_context())
            assert self.tracing is not None
            self.tracing.end(cur.batch, accepted, rejected, error)
        self.metrics.batch_processed(cur.topic, seconds, span_ref)
        self.last_offsets[(cur.topic, cur.partition)] = cur.offset

    def alert_sink(self, sinks: Sequence[Any]) -> _ObservedSink:
        """For replay: one alert sink that adds alert spans, then feeds ``sinks`` and
        :attr:`sinks`."""
        return _ObservedSink(self, [*sinks, *self.sinks])

    # -- the worker's clock ---------------------------------------------------------------------

    async def poll_consumer(self, consumer: Any, topics: Iterable[str], recovering: bool) -> None:
        """Assigned input partitions and their lag, from a Faust consumer (about once a
        second, on the worker's loop). Lag is ``highwater - (last processed offset + 1)``; before
        this worker processed a message of a partition, Faust's last read offset stands in for
        it, and before anything was read the lag is the highwater (an upper bound). Only
        synchronous reads of the consumer's state: nothing here waits on the consumer thread,
        which a rebalance may hold."""
        self.heartbeat = time.monotonic()
        self.recovering = recovering
        wanted = set(topics)
        positions: list[ConsumerPosition] = []
        try:
            assignment = [tp for tp in consumer.assignment() if tp.topic in wanted]
        except Exception:  # the consumer is not started yet
            assignment = []
        read_offsets = getattr(consumer, "_read_offset", None) or {}
        for tp in sorted(assignment):
            try:
                high = consumer.highwater(tp)
            except Exception:  # not fetched from yet
                continue
            if high is None:
                continue
            last = self.last_offsets.get((tp.topic, tp.partition))
            if last is None:  # Faust's last read offset, else an upper bound
                last = read_offsets.get(tp)
            nxt = last + 1 if last is not None else 0
            positions.append(ConsumerPosition(tp.topic, tp.partition, max(0, high - nxt)))
        self.assigned = len(assignment)
        self.metrics.set_consumer(len(assignment), positions)

    def ready(self) -> tuple[bool, str]:
        """Ready when a Kafka broker is reachable (see ``kafka.unready_after``), partitions are
        assigned and their recovery is over."""
        ref = "reference file loaded" if self.references_loaded else "warm-up mode"
        gone = self.brokers.unreachable() if self.brokers is not None else None
        if gone is not None:
            return False, f"no Kafka broker reachable for {gone:.0f} s"
        if self.assigned == 0:
            return False, "no input partitions assigned"
        if self.recovering:
            return False, "recovering state from the changelog"
        return True, f"{self.assigned} partitions assigned, {ref}"

    def healthy(self) -> tuple[bool, str]:
        """Unhealthy only when the worker's loop stopped ticking."""
        if self.heartbeat is not None and time.monotonic() - self.heartbeat > STALL_SECONDS:
            return False, f"worker loop stalled for {time.monotonic() - self.heartbeat:.0f} s"
        return True, ""

    # -- serving ----------------------------------------------------------------------------------

    def page(self) -> bytes:
        """The status page."""
        return render_page(
            self.history,
            version=self.version,
            revision=self.revision,
            ready=self._ready(),
            started=self.started,
        )

    def status(self) -> dict[str, Any]:
        """``/api/status``."""
        ok, why = self._ready()
        return {
            "version": self.version,
            "revision": self.revision,
            "ready": ok,
            "ready_reason": why,
            **self.history.as_json(),
        }

    def serve(self, ready: Callable[[], tuple[bool, str]] | None = None) -> str | None:
        """Start the server on ``metrics.listen`` (unless disabled); returns its URL. A taken
        port is logged and monitoring goes on without the server (Prometheus sees the target
        down), rather than stopping alerts."""
        if ready is not None:
            self._ready = ready
        cfg = self.settings.metrics
        if not cfg.enabled:
            return None
        auth, tls = server_security(cfg, parse_listen(cfg.listen)[0])
        self.server = MonitorServer(
            cfg.listen,
            self.registry,
            self.page,
            self.status,
            self._ready,
            self.healthy,
            auth=auth,
            tls=tls,
        )
        try:
            self.server.start()
        except OSError as exc:
            log.error("metrics server not started on %s: %s", self.settings.metrics.listen, exc)
            self.server = None
            return None
        return self.server.url

    def close(self) -> None:
        """Stop the server and flush spans (bounded)."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.provider is not None:
            self.provider.shutdown()
            self.provider = None


class _ObservedSink:
    """Alert sink of ``replay``: alert spans and trace annotations, then every sink."""

    def __init__(self, obs: Observability, sinks: Sequence[Any]) -> None:
        self.obs = obs
        self.sinks = list(sinks)

    def send(self, transitions: list[Transition]) -> None:
        """Annotate and hand on."""
        out = self.obs.alerts(transitions)
        for sink in self.sinks:
            sink.send(out)

    def close(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()
