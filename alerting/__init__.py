"""What happens to a signal: alert rules, the pending/firing/resolved state machine, and sinks.

Imports neither :mod:`monitor` nor Faust; the state machine does no I/O.
"""
