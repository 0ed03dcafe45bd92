"""The serving-side client: the EventLogger (moved from ``monitor/client.py``)."""

from monitor.client.logger import (
    MAX_BATCH,
    PASSWORD_ENV,
    EventLogger,
    LoggerStats,
    Producer,
    SendFuture,
)
from monitor.client.logger import (
    Headers as Headers,  # monitor.publish buffers pre-encoded events with headers
)

__all__ = [
    "MAX_BATCH",
    "PASSWORD_ENV",
    "EventLogger",
    "LoggerStats",
    "Producer",
    "SendFuture",
]
