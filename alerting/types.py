"""The contract between detectors, the state machine and sinks, in a few types."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from alerting.timefmt import iso


class AlertState(StrEnum):
    """States of one alert; ``transient`` marks a pending alert that cleared before ``for``.

    ``flapping`` and ``flapping_stopped`` are emitted only by a tracker with flap detection
    (:class:`alerting.flapping.FlapDetector`): the alert's condition started or stopped
    changing too often to be notified change by change.
    """

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    TRANSIENT = "transient"
    FLAPPING = "flapping"
    FLAPPING_STOPPED = "flapping_stopped"


@dataclass(frozen=True, slots=True)
class Signal:
    """A condition that holds now: alert name, identifying labels (without ``alertname`` and
    ``severity``) and the annotations that describe it (value, threshold, versions, ...)."""

    alertname: str
    labels: tuple[tuple[str, str], ...]
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transition:
    """One alert state change, as written to sinks.

    ``starts_at``/``ends_at`` are event-time epoch seconds: for ``pending`` the time the
    condition became active, for ``firing`` and ``resolved`` the time it fired (as Prometheus
    sends ``startsAt = FiredAt``); ``ends_at`` is set on ``resolved`` and ``transient``.
    ``offset`` locates the input event at which the change was decided.

    ``flapping`` carries the time flapping started in ``starts_at``; ``flapping_stopped`` adds
    the time it stopped in ``ends_at``. An escalated copy of an alert (its ``severity`` raised
    after firing long enough, see :class:`alerting.rules.Escalation`) has its own labels and
    fingerprint and names the original alert's fingerprint in ``escalated_from``.
    """

    state: AlertState
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None
    offset: int
    fingerprint: str
    escalated_from: str | None = None

    def to_record(self) -> dict[str, Any]:
        """The JSON record written to alert sinks."""
        return {
            "state": self.state.value,
            "alertname": self.alertname,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": iso(self.starts_at),
            "endsAt": iso(self.ends_at) if self.ends_at is not None else None,
            "offset": self.offset,
            "fingerprint": self.fingerprint,
        } | ({"escalated_from": self.escalated_from} if self.escalated_from else {})


class NoticeKind(StrEnum):
    """What a notification is about: an ``alert`` (firing or resolved), an alert that is
    ``flapping`` (started: firing, stopped: resolved), or a ``transient`` (log receivers only)."""

    ALERT = "alert"
    FLAPPING = "flapping"
    TRANSIENT = "transient"


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for one receiver, decided by :class:`alerting.router.Router`.

    ``status`` is ``firing`` or ``resolved``; ``starts_at``/``ends_at`` are event-time epoch
    seconds (``ends_at`` None while firing). ``labels`` identify the alert at the receiver
    (``fingerprint`` is theirs); a flapping notification adds ``flapping="true"`` to the alert's
    labels, so it is an alert of its own beside the regular one.
    """

    receiver: str
    kind: NoticeKind
    status: str
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None
    fingerprint: str
    offset: int
    generator_url: str = ""

    def to_record(self) -> dict[str, Any]:
        """The JSON record written by log receivers."""
        return {
            "receiver": self.receiver,
            "kind": self.kind.value,
            "status": self.status,
            "alertname": self.alertname,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": iso(self.starts_at),
            "endsAt": iso(self.ends_at) if self.ends_at is not None else None,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
            "offset": self.offset,
        }
