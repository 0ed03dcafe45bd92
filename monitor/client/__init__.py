"""The serving-side client: log predictions, features and labels to Kafka without blocking.

A model server creates one :class:`EventLogger` and calls ``log_prediction`` (``log_features``,
``log_label``) on its request path; the call encodes the event, appends it to a bounded buffer
and returns at once, while a background thread batches events into envelopes and delivers them
with kafka-python, retrying and reconnecting through broker outages (``logger.py`` holds the
settings and the request path, ``sender.py`` the buffer and sender thread, ``producer.py`` the
Kafka seam, ``settings.py`` the checks). The package needs only kafka-python, orjson and the
OpenTelemetry API (the ``client`` extra in ``pyproject.toml``), never the worker's Faust, numpy
or pydantic, so it installs beside any model server; ``python -m monitor.client --help`` shows a
command that sends test events with the same settings, to check that a host reaches Kafka.
"""

from monitor.client.logger import EventLogger
from monitor.client.producer import Producer, SendFuture
from monitor.client.sender import LoggerStats
from monitor.client.settings import MAX_BATCH, PASSWORD_ENV

__all__ = [
    "MAX_BATCH",
    "PASSWORD_ENV",
    "EventLogger",
    "LoggerStats",
    "Producer",
    "SendFuture",
]
