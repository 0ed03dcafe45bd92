"""Differential fuzzing of the hot-path decoder against the pydantic schema (issue 14).

``oracle.check(raw)`` runs one input through every fast decode path, through
:func:`monitor.events.parse_event` / :func:`monitor.events.parse_message` and through the
pipeline, and lists what breaks the contract. ``python -m tests.fuzz`` drives it with atheris
(libFuzzer's mutations and ``mutate.py``'s JSON-aware ones); ``python -m tests.fuzz.replay``
checks a corpus and mutations of it without libFuzzer (the run with the sanitized C extension);
``run.sh`` runs both (``make fuzz``); ``test_corpus.py`` checks the committed corpus
(``make_corpus.py`` writes its seeds and reproducers) on every ``make test``.
"""
