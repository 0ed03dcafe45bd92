"""Settings: one YAML file for replay and the live worker, validated by pydantic.

Every setting has a default, so no file at all is a valid configuration. Errors name the file
and the field (``monitor.yaml: alerts.FeatureDrift.for: ...``); unknown keys are errors, so a
typo never silently falls back to a default. Durations are seconds or strings such as ``90s``,
``5m``, ``1h30m``.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)

from alerting.rules import RuleSet
from alerting.settings import (
    AlertRuleSettings,
    Duration,
    NotificationSettings,
    SecretError,
    SecretSource,
    rule_set_from,
)
from detectors.window import DetectorSettings


class ConfigError(ValueError):
    """A configuration problem, with the file and field in the message."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WindowConfig(_Section):
    """``window.size``: events per evaluation window (count windows; 1000)."""

    size: int = Field(1000, ge=50)


class ReferenceConfig(_Section):
    """Where the reference comes from: ``path`` to a profile (from ``driftwatch reference
    build``) or else the first ``warmup_events`` events of each model version (5000).
    ``bins`` quantile bins per numeric feature (10); ``max_categories`` kept per categorical
    feature (50)."""

    path: str | None = None
    warmup_events: int = Field(5000, ge=100)
    bins: int = Field(10, ge=2, le=100)
    max_categories: int = Field(50, ge=1, le=1000)


class CalibrationConfig(_Section):
    """The false-alarm budget: expected ``false_alarm_days`` between false alarms per model
    version at ``events_per_second`` (30 days at 100 events/s); bootstrap size and seed."""

    false_alarm_days: float = Field(30.0, gt=0)
    events_per_second: float = Field(100.0, gt=0)
    bootstrap_draws: int = Field(400, ge=50, le=100_000)
    seed: int = 0


class DriftConfig(_Section):
    """``statistics`` that raise drift alerts (``psi``; also ``js``, ``ks``, ``chi2``);
    Page-Hinkley on per-window z series for slow drifts (on, allowance 0.5, clear at z 3)."""

    statistics: tuple[Literal["psi", "js", "ks", "chi2"], ...] = ("psi",)
    page_hinkley: bool = True
    ph_delta: float = Field(0.5, gt=0)
    change_clear_z: float = Field(3.0, gt=0)
    max_unexpected_features: int = Field(20, ge=1)


class LatencyConfig(_Section):
    """A regression must be at least ``min_increase`` (10%) above the reference p95/p99."""

    min_increase: float = Field(0.1, ge=0)


class LabelsConfig(_Section):
    """Label join: predictions wait ``ttl`` (1h event time) for their label, at most
    ``max_pending`` (100,000) at once; error windows of ``window`` labelled events (500); the
    reference error is learned from the first ``warmup`` labels (2000) unless the profile has it."""

    ttl: Duration = 3600.0
    max_pending: int = Field(100_000, ge=1)
    window: int = Field(500, ge=20)
    warmup: int = Field(2000, ge=20)


class FeaturesConfig(_Section):
    """Explicit feature kinds; anything not listed is inferred from the reference."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()


#: One alert name's rule (``for``, ``keep_firing_for``, ``severity``, ``summary``,
#: ``escalation``, ``runbook``); defined in :mod:`alerting.settings`.
AlertRuleConfig = AlertRuleSettings


class EventsConfig(_Section):
    """What one event may be.

    ``max_bytes``: larger events are rejected as ``too_large`` (1 MiB).

    ``max_future_skew`` (5m) and ``max_age`` (7d): an event whose time is more than
    ``max_future_skew`` after, or more than ``max_age`` before, its reference clock is rejected
    as ``clock_skew`` (dead-lettered by the worker, counted by replay), so one event with a wrong
    clock can move no window and no ``for`` timer. The reference clock is the Kafka message's
    timestamp in ``driftwatch run``. In ``driftwatch replay`` (and for messages without a
    timestamp) it is the input's *watermark*: the latest event time accepted so far from that
    input (the file; one watermark for all model versions in it, so a quiet version is judged by
    the time of the whole stream, not by its own last event). The first events of an input (its
    first batch: a block of lines of a file) set the watermark to their median time, so one
    wrong clock among them cannot; time may go backwards by up to ``max_age``. Since a
    recording can also jump (a gap in traffic, two recordings one after the other), two
    consecutive events outside the bounds that agree with each other (within
    ``max_future_skew``) move the watermark to them: the first is rejected, the second accepted.
    """

    max_bytes: int = Field(1 << 20, ge=256)
    max_future_skew: Duration = Field(300.0, gt=0)
    max_age: Duration = Field(7 * 86400.0, gt=0)


class LimitsConfig(_Section):
    """Bounds on the state one worker (or one replay) keeps, whatever the input.

    ``max_streams`` (1,000): model versions (and feature-event streams) kept at once. A new one
    beyond it takes the place of the stream idle the longest if that stream has been idle for
    ``stream_idle_ttl`` (24h); otherwise its events are rejected as ``too_many_streams``.
    Idleness is measured in event time, so replay decides as the live worker does: a stream is
    idle when no event of it was accepted while the monitor's clock (the latest event time
    accepted from any input) advanced by ``stream_idle_ttl``. A stream with a pending or firing
    alert is never evicted. An evicted stream forgets its open window (counted as the warning
    ``evicted_events``); its checkpoint stays, so if the version comes back the worker resumes
    from it, as after a restart (replay, which keeps no checkpoints, warms it up again).

    ``max_warmup_events`` (100,000): events held at once by streams learning their reference
    from a warm-up (``reference.warmup_events`` each; a decoded event takes about 1-3 KB). A
    stream that starts a warm-up reserves its whole warm-up, so the warm-ups under way always
    finish; a new version that needs a warm-up while the reservations would exceed this limit is
    rejected as ``warmup_full`` until one finishes or an idle one is evicted. Versions with a
    reference profile (``reference.path``) or a checkpoint need no warm-up. Must be at least
    ``reference.warmup_events``.
    """

    max_streams: int = Field(1000, ge=1)
    stream_idle_ttl: Duration = Field(86400.0, gt=0)
    max_warmup_events: int = Field(100_000, ge=100)


class KafkaConfig(_Section):
    """Where the live worker reads from (``driftwatch run``).

    ``bootstrap_servers`` (``127.0.0.1:9092``), ``group_id`` (``driftwatch``; also the Faust app
    id, so it names the changelog topics), ``partitions`` of the input topics (4; the worker's
    state tables are co-partitioned with them), and the security settings. The SASL password is
    never written in this file: it is read from the environment variable named by
    ``sasl_password_env`` or from ``sasl_password_file``.

    ``fetch_max_wait_ms`` (100): how long a broker may hold the worker's fetch request when the
    partitions in it have no new data. Faust fixes it at 1,500 ms; the worker sets its own,
    because while a fetch for the empty ``features``/``labels`` partitions is held, the
    consumer sends no other fetch to that broker, and with one broker the ``predictions``
    partitions waited too (the envelope benchmark spent a third of its time so: 0.63 CPU).

    ``producer_linger_ms`` (50): how long the worker's producer may hold a changelog record
    (a checkpoint, about 15 KB per window) to send it with the next ones in one request, in
    batches of up to 1 MiB. Faust's default sends every checkpoint on its own, one produce
    request per window. A commit flushes the producer first, so nothing is committed before
    the checkpoints it relies on are stored.

    ``recovery_stall_seconds`` (30): how long the worker's table recovery after a rebalance may
    read no changelog record while records remain before it is started over; after three such
    restarts the worker exits with an error, for its supervisor to restart it (see
    ``monitor.recovery_watchdog``).

    ``session_timeout_ms`` (10,000) and ``heartbeat_interval_ms`` (3,000): how long the group
    waits for a worker that stopped sending heartbeats before giving its partitions to the
    others, and how often heartbeats are sent (Kafka's consumer settings; Faust's own default
    is 60 s). ``unready_after`` (15s): ``/readyz`` says not ready once no Kafka broker has
    been reachable for this long.

    ``max_unacked_messages`` (10,000): messages of a partition the worker may hold
    unacknowledged. A message is acknowledged once the model versions it fed have checkpointed
    past it, at a learned reference or a closed window; a version still collecting (a warm-up
    that never finishes, a window that fills slowly) writes its collected events into its
    checkpoint when its partition holds more than this, so the committed offset follows the
    stream whatever versions appear and a restart re-reads at most about this many messages.

    ``data_dir``: where the Faust worker keeps its local files, in ``<data_dir>/<group_id>``.
    Unset, it is ``$XDG_STATE_HOME/driftwatch`` (``~/.local/state/driftwatch``), never the
    working directory. State itself lives in changelog topics; nothing there must be backed up.
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = Field("driftwatch", pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(4, ge=1, le=1024)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password_env: str = "DRIFTWATCH_KAFKA_SASL_PASSWORD"
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    max_message_bytes: int = Field(16 << 20, ge=1024)
    fetch_max_wait_ms: int = Field(100, ge=0, le=30_000)
    producer_linger_ms: int = Field(50, ge=0, le=10_000)
    recovery_stall_seconds: float = Field(30.0, gt=0)
    max_unacked_messages: int = Field(10_000, ge=10)
    session_timeout_ms: int = Field(10_000, ge=1_000, le=1_800_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100, le=600_000)
    unready_after: Duration = Field(15.0, gt=0)
    data_dir: str | None = None

    @model_validator(mode="after")
    def _heartbeats_fit(self) -> KafkaConfig:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be at most a third "
                f"of session_timeout_ms ({self.session_timeout_ms}), as Kafka advises"
            )
        return self

    def state_dir(self) -> Path:
        """The Faust data directory of this worker group (see ``data_dir``)."""
        if self.data_dir is not None:
            root = Path(self.data_dir).expanduser()
        else:
            state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
            root = Path(state_home) / "driftwatch"
        return root / self.group_id


class TopicsConfig(_Section):
    """Topic names: ``predictions``, ``features``, ``labels`` and the ``dead_letter`` topic
    (``driftwatch.dlq``) that receives every input that could not be used, with the reason."""

    predictions: str = "predictions"
    features: str = "features"
    labels: str = "labels"
    dead_letter: str = "driftwatch.dlq"


class TokenSource(SecretSource):
    """Where a token comes from: exactly one of ``file`` (its content, surrounding whitespace
    removed) or ``env`` (the name of an environment variable), as for the notification
    receivers' secrets. Unlike those, it is read once, when the settings are loaded, so a
    missing or empty one is a configuration error naming the field; it is never shown
    (``repr`` hides it)."""

    _value: SecretStr = PrivateAttr(default=SecretStr(""))

    @model_validator(mode="after")
    def _read_now(self) -> TokenSource:
        try:
            value = self.read()
        except SecretError as exc:
            raise ValueError(str(exc)) from None
        if not value:
            where = f"file {self.file}" if self.file is not None else f"variable {self.env}"
            raise ValueError(f"{where} is empty")
        self._value = SecretStr(value)
        return self

    def secret(self) -> str:
        """The token itself (never log it)."""
        return self._value.get_secret_value()


class MetricsAuthConfig(_Section):
    """``bearer_token``: every path but ``/healthz`` and ``/readyz`` then requires
    ``Authorization: Bearer <token>`` (or the status page's login cookie)."""

    bearer_token: TokenSource


class MetricsTLSConfig(_Section):
    """``certfile`` and ``keyfile`` (PEM; the certificate file may hold the chain): serve HTTPS,
    TLS 1.2 or later."""

    certfile: str
    keyfile: str

    @model_validator(mode="after")
    def _loads(self) -> MetricsTLSConfig:
        try:  # a bad pair is a configuration error now, not a server that never starts
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.certfile, self.keyfile, password="")  # never a prompt
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"cannot load certfile {self.certfile} with keyfile {self.keyfile}: "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from None
        return self


class MetricsConfig(_Section):
    """The metrics, health and status server (``driftwatch run``; ``replay --serve``).

    ``listen``: ``host:port`` to bind (``127.0.0.1:9464``; 9464 is also the default
    ``notifications.external_url`` port). Bind ``0.0.0.0:9464`` only behind a firewall, or
    with ``auth`` and ``tls``: the status page shows feature names and alert details.
    ``enabled: false`` serves nothing (the numbers are still kept). ``history_windows``: windows
    per model version kept for the status page charts (240); ``recent_alerts``: resolved alerts
    the page lists (50).

    ``auth.bearer_token`` (``{file: PATH}`` or ``{env: VARIABLE}``; none by default): require
    ``Authorization: Bearer <token>`` on every path but the probes ``/healthz`` and ``/readyz``;
    a browser signs in once on ``/login`` (see :mod:`monitor.http_auth`). ``tls.certfile`` and
    ``tls.keyfile`` (none by default): serve HTTPS instead of HTTP.
    """

    enabled: bool = True
    listen: str = Field("127.0.0.1:9464", pattern=r"^\[?[A-Za-z0-9.:_-]*\]?:\d{1,5}$")
    history_windows: int = Field(240, ge=10, le=100_000)
    recent_alerts: int = Field(50, ge=1, le=10_000)
    max_feature_series: int = Field(20_000, ge=0)
    auth: MetricsAuthConfig | None = None
    tls: MetricsTLSConfig | None = None


class TracingConfig(_Section):
    """OpenTelemetry spans: one ``process <topic>`` span per Kafka message, one span per alert
    state change; exported as OTLP/HTTP protobuf through a batch processor.

    ``enabled`` (false): export spans to ``endpoint`` (``http://127.0.0.1:4318/v1/traces``, the
    full URL) with ``headers`` and a ``timeout`` per request (10 s); an unreachable collector
    never blocks the monitor, spans it could not take are counted
    (``driftwatch_spans_dropped_total``). At most ``queue_size`` (2048) spans wait for export.
    ``environment`` becomes ``deployment.environment.name``; ``repository_url``
    ``vcs.repository.url.full``; ``revision`` overrides the code revision (else the
    ``DRIFTWATCH_REVISION`` environment variable, else ``git rev-parse HEAD`` of the source
    checkout). ``trace_url``: template of the link put in alert annotations, with ``{trace_id}``
    and ``{span_id}`` (e.g. ``http://jaeger:16686/trace/{trace_id}``). ``max_links``: links per
    consumer span (32; a sample spread evenly over the message's events, the SDK link limit is
    set to match); ``alert_links``: links from an alert span to events of its window (16).
    """

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 10.0
    service_name: str = "driftwatch"
    environment: str | None = None
    repository_url: str | None = None
    revision: str | None = None
    trace_url: str | None = None
    max_links: int = Field(32, ge=1, le=10_000)
    alert_links: int = Field(16, ge=0, le=1000)
    queue_size: int = Field(2048, ge=16, le=1_000_000)


class Settings(_Section):
    """The whole configuration file."""

    window: WindowConfig = WindowConfig()
    reference: ReferenceConfig = ReferenceConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    drift: DriftConfig = DriftConfig()
    latency: LatencyConfig = LatencyConfig()
    labels: LabelsConfig = LabelsConfig()
    features: FeaturesConfig = FeaturesConfig()
    alerts: dict[str, AlertRuleConfig] = Field(default_factory=dict)
    notifications: NotificationSettings = NotificationSettings()
    events: EventsConfig = EventsConfig()
    limits: LimitsConfig = LimitsConfig()
    kafka: KafkaConfig = KafkaConfig()
    topics: TopicsConfig = TopicsConfig()
    metrics: MetricsConfig = MetricsConfig()
    tracing: TracingConfig = TracingConfig()

    @model_validator(mode="after")
    def _warmup_fits(self) -> Settings:
        if self.limits.max_warmup_events < self.reference.warmup_events:
            raise ValueError(
                f"limits.max_warmup_events ({self.limits.max_warmup_events}) must be at least "
                f"reference.warmup_events ({self.reference.warmup_events}), or no model version "
                "could ever learn its reference"
            )
        return self

    def detector_settings(self) -> DetectorSettings:
        """The detector part of the settings."""
        return DetectorSettings(
            window_size=self.window.size,
            budget_days=self.calibration.false_alarm_days,
            events_per_second=self.calibration.events_per_second,
            statistics=self.drift.statistics,
            bootstrap_draws=self.calibration.bootstrap_draws,
            seed=self.calibration.seed,
            page_hinkley=self.drift.page_hinkley,
            ph_delta=self.drift.ph_delta,
            change_clear_z=self.drift.change_clear_z,
            latency_min_increase=self.latency.min_increase,
            max_unexpected_features=self.drift.max_unexpected_features,
        )

    def rule_set(self) -> RuleSet:
        """Built-in rules with this file's overrides applied."""
        return rule_set_from(self.alerts)


def _format_errors(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (check the spelling; see README, Configuration)"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def settings_from_mapping(data: Any, source: str = "<config>") -> Settings:
    """Validate an already-parsed mapping; errors name ``source`` and the field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping of settings")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from exc
    try:
        settings.rule_set()
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    return settings


def load_settings(path: str | Path | None) -> Settings:
    """Settings from a YAML file, or the defaults when ``path`` is None."""
    if path is None:
        return Settings()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{p}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    return settings_from_mapping(data, str(p))
