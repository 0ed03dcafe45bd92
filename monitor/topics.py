"""Input topics that agree with the worker's state tables, checked before the worker starts.

The checkpoint table is co-partitioned with the input topics: its changelog must have as many
partitions as they do, or Faust refuses to write it. Topics created by something else first (a
producer with broker-side auto-creation makes one partition) would otherwise break the worker at
its first checkpoint, so :func:`ensure_topics` runs at start-up: it creates missing topics with
``kafka.partitions`` partitions and adopts the partition count of existing ones, which must all
agree.

Topics it creates (the inputs, the dead-letter topic and the checkpoints' changelog) get
``max.message.bytes`` = ``kafka.max_message_bytes`` (16 MiB by default), so that a message the
worker accepts fits, its dead letter can be written and a checkpoint can carry a warm-up's
collected events (see ``kafka.max_unacked_messages``); the broker's default (1 MiB) would
refuse them. An existing
topic with a smaller limit is logged as a warning (it is not altered: its owner decides).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from monitor.config import ConfigError, Settings
from monitor.kafka_security import sasl_password, ssl_context
from monitor.kafka_sockets import release_kafka_sockets

log = logging.getLogger("driftwatch.topics")
MAX_MESSAGE_BYTES = "max.message.bytes"


def admin_config(settings: Settings) -> dict[str, Any]:
    """kafka-python client settings (security included) from the ``kafka`` section."""
    k = settings.kafka
    cfg: dict[str, Any] = {
        "bootstrap_servers": [h.strip() for h in k.bootstrap_servers.split(",") if h.strip()],
        "client_id": f"{k.group_id}-admin",
        "security_protocol": k.security_protocol,
        "request_timeout_ms": 15_000,
    }
    ctx = ssl_context(k)
    if ctx is not None:
        cfg["ssl_context"] = ctx
    password = sasl_password(k)
    if password is not None:
        cfg["sasl_mechanism"] = k.sasl_mechanism
        cfg["sasl_plain_username"] = k.sasl_username or ""
        cfg["sasl_plain_password"] = password.value
    return cfg


def changelog_topic(settings: Settings) -> str:
    """The changelog topic of the worker's checkpoint table (Faust names it so)."""
    return f"{settings.kafka.group_id}-checkpoints-changelog"


def ensure_topics(settings: Settings) -> int:
    """Create missing input topics; return the partition count the worker must use."""
    t = settings.topics
    inputs = [t.predictions, t.features, t.labels]
    changelog = changelog_topic(settings)
    release_kafka_sockets()
    try:
        admin = KafkaAdminClient(**admin_config(settings))
    except KafkaError as exc:
        raise ConfigError(
            f"kafka.bootstrap_servers: cannot reach Kafka at {settings.kafka.bootstrap_servers}: "
            f"{exc}"
        ) from exc
    try:
        existing = _partitions(admin, [*inputs, t.dead_letter, changelog])
        counts = {name: existing[name] for name in inputs if name in existing}
        if len(set(counts.values())) > 1:
            raise ConfigError(
                "topics: the input topics must have the same number of partitions, found "
                + ", ".join(f"{n}={c}" for n, c in counts.items())
            )
        partitions = next(iter(counts.values()), settings.kafka.partitions)
        if partitions != settings.kafka.partitions:
            log.warning(
                "input topics have %d partitions; using that instead of kafka.partitions=%d",
                partitions,
                settings.kafka.partitions,
            )
        limit = {MAX_MESSAGE_BYTES: str(settings.kafka.max_message_bytes)}
        missing = [
            NewTopic(name, partitions if name in inputs else 1, 1, topic_configs=limit)
            for name in [*inputs, t.dead_letter]
            if name not in existing
        ]
        if changelog not in existing:  # as Faust would make it, with room for collected events
            compacted = {**limit, "cleanup.policy": "compact"}
            missing.append(NewTopic(changelog, partitions, 1, topic_configs=compacted))
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was quicker
                admin.create_topics(missing)
            log.info("created topics %s", ", ".join(m.name for m in missing))
        if existing:
            _check_limits(admin, sorted(existing), settings.kafka.max_message_bytes)
        return partitions
    finally:
        admin.close()


def message_limits(admin: Any, names: list[str]) -> dict[str, int]:
    """``max.message.bytes`` of each topic in ``names`` that the broker describes."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, n, [MAX_MESSAGE_BYTES]) for n in names]
    found = admin.describe_configs(resources, config_filter="all")
    out: dict[str, int] = {}
    for name, configs in (found.get("topic") or {}).items():
        entry = configs.get(MAX_MESSAGE_BYTES)
        value = entry.get("value") if isinstance(entry, dict) else entry
        if value is not None:
            out[name] = int(value)
    return out


def _check_limits(admin: Any, names: list[str], limit: int) -> None:
    """Warn about existing topics that refuse messages the worker accepts."""
    try:
        found = message_limits(admin, names)
    except (KafkaError, ValueError, TypeError) as exc:  # only a warning is at stake
        log.debug("cannot describe topic configs: %s", exc)
        return
    for name, value in found.items():
        if value < limit:
            log.warning(
                "topic %s has max.message.bytes=%d, less than kafka.max_message_bytes=%d: "
                "larger messages, dead letters and checkpoints are refused (dead letters are cut "
                "to fit; raise it with kafka-configs.sh --alter --add-config max.message.bytes=N)",
                name,
                value,
                limit,
            )


def _partitions(admin: Any, names: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for desc in admin.describe_topics(names):
        if desc.get("error_code", 0) == 0 and desc.get("partitions"):
            out[desc.get("name") or desc["topic"]] = len(desc["partitions"])
    return out
