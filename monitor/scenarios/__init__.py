"""Development tools: synthetic scenarios with known incidents, their scoring, and publishing.

Nothing here runs in production. :mod:`~monitor.scenarios.simulate` generates a card-fraud
prediction stream (drawn from :mod:`~monitor.scenarios.population`) with one injected incident
from :mod:`~monitor.scenarios.incidents` and a truth document saying which lines carry it;
:mod:`~monitor.scenarios.evaluate` scores an alert stream against that truth; and
:mod:`~monitor.scenarios.publish` sends a scenario (or any JSON-lines events) to Kafka through
the serving-side :class:`~monitor.client.EventLogger`. The command line reaches them as
``driftwatch simulate`` and ``driftwatch evaluate``; the tests and benchmarks use the generator
as their source of realistic events.
"""
