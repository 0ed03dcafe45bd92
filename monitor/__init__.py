"""driftwatch: the product around the detectors and the alert state machine.

Event schemas, settings, the pipeline that wires detectors to alerts, the command line, and
(later) the Faust app, the serving-side logger, metrics and tracing.
"""

__version__ = "0.1.0"
