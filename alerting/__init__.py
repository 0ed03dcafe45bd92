"""What happens to a signal, and who is told.

``types`` (the contract), ``names`` (the built-in alert names, defined once), ``rules`` (for,
keep_firing_for, severity, escalation, runbook), ``state`` (pending/firing/resolved/transient per
fingerprint), ``flapping`` (Nagios-style flap detection), ``routing`` and ``router`` (who is told
what; no I/O), ``settings`` (the ``notifications:`` configuration), ``dispatch`` with
``alertmanager``, ``webhook``, ``sinks``, ``delivery`` and ``transport`` (delivery on background
threads), ``notify`` (wiring), ``metrics`` (delivery counters for Prometheus).

Imports neither :mod:`monitor` nor Faust; the state machine and the router do no I/O.
"""
