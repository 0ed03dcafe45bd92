"""Differential fuzzing of the hot-path decoder against the pydantic schema (issue 14).

``oracle.check(raw)`` runs one input through every fast decode path and through
:func:`monitor.events.parse_event` / :func:`monitor.events.parse_message`, and lists what breaks
the contract. ``python -m tests.fuzz`` drives it with atheris; ``tests/fuzz/run.sh`` does so
with the C extension built with AddressSanitizer and UndefinedBehaviorSanitizer;
``test_corpus.py`` replays the committed corpus on every ``make test``.
"""
