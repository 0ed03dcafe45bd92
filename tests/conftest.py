"""Shared fixtures: the real Kafka broker, Alertmanager and worker plugins. The tests' own
kafka-python clients close the sockets of failed connection attempts, as driftwatch's do
(monitor/kafka_sockets.py)."""

import warnings

# tests.worker_proc before tests.alertmanager_server, which imports it: pytest rewrites the
# asserts of a plugin only if it registers it before anything imports it.
pytest_plugins = [
    "tests.kafka_broker",
    "tests.accel_impls",
    "tests.worker_proc",
    "tests.alertmanager_server",
]

with warnings.catch_warnings():
    # kafka-python 3.0.12 loads its protocol schemas with importlib.resources.open_text
    # (deprecated) at import; the suite's "kafka.*" filter does not match the stdlib frame.
    warnings.simplefilter("ignore", DeprecationWarning)
    from monitor.kafka_sockets import release_kafka_sockets

release_kafka_sockets()
