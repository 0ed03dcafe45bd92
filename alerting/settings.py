"""Notification settings: rules per alert name, flap detection, routes and receivers.

Embedded in driftwatch's settings file as ``alerts:`` (rules) and ``notifications:`` (the
rest); with nothing configured no notification is sent and nothing else changes. Durations are
seconds or strings like ``90s``, ``5m``, ``1h30m``. Secrets (passwords, tokens) come only from
an environment variable (``{env: NAME}``) or a file (``{file: /path}``), are read when the
dispatcher is built, and never appear in logs, errors or ``repr``. Example::

    notifications:
      external_url: http://driftwatch.internal:9464
      runbook_base_url: https://git.example.com/ml/driftwatch/-/blob/main/deploy/runbooks/
      route:
        receiver: alertmanager
        routes:
          - matchers: ['severity="info"']
            receiver: log
      receivers:
        - name: alertmanager
          alertmanager:
            urls: [http://am-0:9093, http://am-1:9093]
            resend_interval: 1m
            bearer_token: {file: /run/secrets/am-token}
        - name: log
          log: {path: notifications.jsonl}
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from alerting.flapping import FlapSettings
from alerting.routing import Route, parse_matchers
from alerting.rules import DEFAULT_RULES, AlertRule, Escalation, RuleSet


def check_url(url: str) -> str:
    """An http(s) URL without credentials (those belong in ``basic_auth``, never in logs)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url {url!r} must start with http:// or https://")
    if urlsplit(url).username is not None:
        raise ValueError("put credentials in basic_auth or bearer_token, not in the url")
    return url


_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$"
)


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like ``90s``, ``5m``, ``1h30m``, ``7d``.

    >>> parse_duration("1h30m"), parse_duration(45), parse_duration("2.5s"), parse_duration("7d")
    (5400.0, 45.0, 2.5, 604800.0)
    """
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like 90s, 5m, 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and any(m.groups()):
            d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return d * 86400 + h * 3600 + mi * 60 + s
    raise ValueError(f"invalid duration {value!r}: use seconds or a string like 90s, 5m, 1h")


Duration = Annotated[float, BeforeValidator(parse_duration)]
SeverityName = Literal["critical", "warning", "info"]


class SecretError(ValueError):
    """A secret could not be read; the message names its source, never its value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- rules -----------------------------------------------------------------------------------


class EscalationSettings(_Section):
    """Raise ``severity`` once the alert has been firing for ``after``."""

    after: Duration
    severity: SeverityName


class AlertRuleSettings(_Section):
    """One alert name's rule; unset fields keep the built-in value.

    ``for`` (event time the condition must hold before firing; built-in 60 s, DataQuality
    30 s), ``keep_firing_for`` (event time a firing alert stays firing after its condition
    clears; 60 s, PerformanceDegradation 120 s), ``severity`` (``critical`` pages, ``warning``
    goes to chat or tickets, ``info`` to logs), ``summary``, ``escalation`` (e.g. ``[{after:
    30m, severity: critical}]``; none built in) and ``runbook`` (a URL; default: runbook base
    URL + alert name + ``.md``).
    """

    for_: Duration | None = Field(None, alias="for")
    keep_firing_for: Duration | None = None
    severity: SeverityName | None = None
    summary: str | None = None
    escalation: tuple[EscalationSettings, ...] | None = None
    runbook: str | None = None

    def apply(self, base: AlertRule) -> AlertRule:
        """``base`` with this rule's settings applied."""
        return AlertRule(
            for_seconds=base.for_seconds if self.for_ is None else self.for_,
            keep_firing_for_seconds=(
                base.keep_firing_for_seconds
                if self.keep_firing_for is None
                else self.keep_firing_for
            ),
            severity=self.severity or base.severity,
            summary=self.summary if self.summary is not None else base.summary,
            escalation=(
                base.escalation
                if self.escalation is None
                else tuple(Escalation(e.after, e.severity) for e in self.escalation)
            ),
            runbook=self.runbook if self.runbook is not None else base.runbook,
        )


def rule_set_from(overrides: Mapping[str, AlertRuleSettings]) -> RuleSet:
    """Built-in rules with ``overrides`` applied (new names start from ``AlertRule()``)."""
    rules = dict(DEFAULT_RULES)
    for name, over in overrides.items():
        try:
            rules[name] = over.apply(rules.get(name, AlertRule()))
        except ValueError as exc:
            raise ValueError(f"alerts.{name}: {exc}") from exc
    return RuleSet(rules)


# -- flapping ----------------------------------------------------------------------------------


class FlappingSettings(_Section):
    """Flap detection (on by default). ``window`` evaluations are kept per alert (21); an alert
    starts flapping at ``high_threshold`` percent weighted state change (20) and stops at
    ``low_threshold`` or below (5); weights grow from 0.75 (oldest change) to 1.25 (newest).
    Nagios' sample configuration uses the same 5/20 and weights; Icinga 2 uses 25/30 over 20
    changes with weights 0.8-1.18 and leaves flap detection off. ``severity`` of flapping
    notifications: unset keeps the alert's own."""

    enabled: bool = True
    window: int = Field(21, ge=3, le=64)
    low_threshold: float = Field(5.0, ge=0, le=100)
    high_threshold: float = Field(20.0, ge=0, le=100)
    severity: SeverityName | None = None

    @model_validator(mode="after")
    def _order(self) -> FlappingSettings:
        if self.low_threshold >= self.high_threshold:
            raise ValueError("low_threshold must be below high_threshold")
        return self

    def flap_settings(self) -> FlapSettings | None:
        """The detector's settings, or None when flap detection is off."""
        if not self.enabled:
            return None
        return FlapSettings(self.window, self.low_threshold, self.high_threshold)


# -- receivers -----------------------------------------------------------------------------


class SecretSource(_Section):
    """Where a secret is read from: an environment variable ``env`` or a file ``file``
    (surrounding whitespace is stripped)."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretSource:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def read(self) -> str:
        """The secret's value; :class:`SecretError` names the source, never the value."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise SecretError(f"environment variable {self.env} is not set")
            return value.strip()
        assert self.file is not None
        try:
            return Path(self.file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(f"cannot read secret file {self.file}: {type(exc).__name__}") from exc


class BasicAuth(_Section):
    """HTTP basic authentication: ``username`` and a ``password`` secret."""

    username: str
    password: SecretSource


class TlsSettings(_Section):
    """TLS for ``https://`` URLs: ``ca_file`` (PEM bundle; default the system's), client
    certificate ``cert_file`` + ``key_file``, and ``insecure_skip_verify`` (tests only)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self


class HttpSettings(_Section):
    """How to talk HTTP: ``timeout`` per request (10 s), ``basic_auth`` or ``bearer_token``
    (at most one), ``tls``. Proxy variables of the environment are ignored."""

    timeout: Duration = 10.0
    basic_auth: BasicAuth | None = None
    bearer_token: SecretSource | None = None
    tls: TlsSettings | None = None

    @model_validator(mode="after")
    def _auth(self) -> HttpSettings:
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("give basic_auth or bearer_token, not both")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        return self


class AlertmanagerSettings(HttpSettings):
    """Alertmanager API v2 (``POST <url>/api/v2/alerts``) on every one of ``urls`` (an HA
    pair gets every alert; do not load-balance).

    Active alerts are re-sent every ``resend_interval`` (1 m, Prometheus' default) with
    ``endsAt = now + 4 x resend_interval``; a resolved alert is sent at once with ``endsAt`` =
    its resolve time and re-sent for ``resolve_retention`` (15 m, as Prometheus) so that an
    Alertmanager that restarted meanwhile still learns it. ``timestamps`` says which clock
    ``startsAt``/resolved ``endsAt`` follow: ``event`` (default) the event time at which the
    alert fired/resolved, clamped to never be later than the wall clock (replays of old events
    keep their real times, future-dated events cannot keep an alert alive); ``wall`` the wall
    time at which driftwatch decided. Active ``endsAt`` always follows the wall clock.
    """

    urls: tuple[str, ...] = Field(..., min_length=1)
    resend_interval: Duration = 60.0
    resolve_retention: Duration = 900.0
    timestamps: Literal["event", "wall"] = "event"

    @model_validator(mode="after")
    def _positive(self) -> AlertmanagerSettings:
        if self.resend_interval <= 0:
            raise ValueError("resend_interval must be positive")
        for url in self.urls:
            check_url(url)
        return self


class WebhookSettings(HttpSettings):
    """A generic webhook: ``POST url`` with a JSON body modelled on Alertmanager's webhook
    payload (``version`` ``driftwatch/1``, ``status``, ``alerts`` with labels, annotations,
    ``startsAt``/``endsAt``, ``fingerprint``). ``send_resolved`` (true), ``send_transient``
    (false), ``max_alerts`` per request (0 = all)."""

    url: str
    send_resolved: bool = True
    send_transient: bool = False
    max_alerts: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _scheme(self) -> WebhookSettings:
        check_url(self.url)
        return self


class LogSettings(_Section):
    """JSON lines, one per notification: to ``path`` (appended), or to the Python logger
    ``driftwatch.notifications`` at INFO when ``path`` is unset. ``send_transient`` (true)."""

    path: str | None = None
    send_transient: bool = True


class ReceiverSettings(_Section):
    """A named receiver of exactly one kind: ``alertmanager``, ``webhook`` or ``log``."""

    name: str = Field(..., min_length=1)
    alertmanager: AlertmanagerSettings | None = None
    webhook: WebhookSettings | None = None
    log: LogSettings | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ReceiverSettings:
        kinds = [k for k in (self.alertmanager, self.webhook, self.log) if k is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of alertmanager, webhook or log")
        return self

    @property
    def send_transient(self) -> bool:
        """Whether this receiver is told about transients."""
        if self.webhook is not None:
            return self.webhook.send_transient
        return self.log is not None and self.log.send_transient


class RouteSettings(_Section):
    """A route: ``receiver`` (inherited when unset), ``matchers`` (Alertmanager syntax, ANDed,
    e.g. ``['severity="critical"', 'model=~"fraud.*"']``), ``continue`` (also try the next
    siblings after matching; false) and child ``routes``."""

    receiver: str | None = None
    matchers: tuple[str, ...] = ()
    continue_: bool = Field(False, alias="continue")
    routes: tuple[RouteSettings, ...] = ()

    @model_validator(mode="after")
    def _parse(self) -> RouteSettings:
        parse_matchers(self.matchers)
        return self

    def build(self) -> Route:
        """The routing tree."""
        return Route(
            receiver=self.receiver,
            matchers=parse_matchers(self.matchers),
            continue_=self.continue_,
            routes=tuple(r.build() for r in self.routes),
        )


class DeliverySettings(_Section):
    """Delivery without blocking the pipeline: at most ``queue_capacity`` undelivered
    notifications per receiver endpoint (10,000, as Prometheus' notification queue; more are
    dropped and counted); retries after network errors and 5xx wait ``initial_backoff`` (0.5 s)
    doubling up to ``max_backoff`` (30 s), each with random jitter of up to half the wait;
    4xx answers are not retried."""

    queue_capacity: int = Field(10_000, ge=1)
    initial_backoff: Duration = 0.5
    max_backoff: Duration = 30.0

    @model_validator(mode="after")
    def _order(self) -> DeliverySettings:
        if not 0 < self.initial_backoff <= self.max_backoff:
            raise ValueError("need 0 < initial_backoff <= max_backoff")
        return self


class NotificationSettings(_Section):
    """Who is told what (see the module docstring for an example).

    ``receivers`` (none by default: nothing is sent); ``route``, the routing tree (unset: every
    receiver gets everything); ``runbook_base_url`` (unset: this repository's
    ``deploy/runbooks/``); ``external_url``, where people reach this monitor, the base of each
    alert's ``generatorURL`` (``http://localhost:9464``); ``flapping``; ``delivery``.
    """

    receivers: tuple[ReceiverSettings, ...] = ()
    route: RouteSettings | None = None
    runbook_base_url: str | None = None
    external_url: str = "http://localhost:9464"
    flapping: FlappingSettings = FlappingSettings()
    delivery: DeliverySettings = DeliverySettings()

    @model_validator(mode="after")
    def _names(self) -> NotificationSettings:
        names = [r.name for r in self.receivers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate receiver names: {', '.join(sorted(dup))}")
        if self.route is not None:
            tree = self.route.build()
            if tree.receiver is None:
                raise ValueError("route: the root route needs a receiver")
            unknown = tree.receiver_names() - set(names)
            if unknown:
                raise ValueError(f"route: unknown receivers: {', '.join(sorted(unknown))}")
        if not self.external_url.startswith(("http://", "https://")):
            raise ValueError("external_url must start with http:// or https://")
        return self
