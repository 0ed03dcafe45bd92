"""Performance benchmarks: ``python -m tests.benchmarks`` (``make bench``).

Every benchmark measures its own baseline in the same run (River's ADWIN, a bare JSON parse, a
smaller replay) and reports ratios against it, because the machines this runs on are shared and
noisy: absolute numbers move from run to run, ratios much less. Each measurement is repeated and
reported as the median and the best (minimum time); targets are judged on the median and printed,
never turned into an exit status.

Modules: :mod:`~tests.benchmarks.detector_core`, :mod:`~tests.benchmarks.replay_e2e`,
:mod:`~tests.benchmarks.memory`, :mod:`~tests.benchmarks.kafka_e2e` (a real broker) and
:mod:`~tests.benchmarks.instructions` (instructions per event counted by valgrind, which do not
move with the machine's load); shared helpers in :mod:`~tests.benchmarks.harness`.
"""
