"""``driftwatch run`` with a bug planted in the pipeline (a test tool for the adapter's
last-resort guard; run as ``python -m tests.poisoned_worker run ...``).

The pipeline raises ``RuntimeError`` for any batch holding a prediction whose ``event_id``
starts with ``poison``: the worker must dead-letter that message as ``internal_error`` and go
on with the others.
"""

from __future__ import annotations

import sys
from typing import Any

from monitor.cli import main
from monitor.pipeline import Pipeline


def plant_bug() -> None:
    original = Pipeline._stream_predictions

    def stream_predictions(self: Pipeline, key: Any, events: Any, *args: Any) -> None:
        if any(str(e.event_id).startswith("poison") for e in events):
            raise RuntimeError("planted bug")
        original(self, key, events, *args)

    Pipeline._stream_predictions = stream_predictions  # type: ignore[method-assign,assignment]


if __name__ == "__main__":
    plant_bug()
    sys.exit(main(sys.argv[1:]))
