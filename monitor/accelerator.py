"""The decoder's accelerator: the C extension ``monitor._featcols`` when it was built, else its
pure-Python twin :mod:`monitor.accelerator_py`, with the same names and results.

The C extension is compiled by ``pip install`` where a compiler is; without one the package
installs and works on the twin, slower (docs/PERFORMANCE.md has both figures). Setting
``DRIFTWATCH_ACCEL=0`` in the environment takes the twin even where the extension is built.
:data:`IMPLEMENTATION` says which one this process uses: ``"c"`` or ``"python"``.

This is the only module that imports ``monitor._featcols``. Modules import the names from
here as module globals (``from monitor.accelerator import scan``), not into closures or
default arguments, so that a test can swap the implementation (``tests/accel_impls.py``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

__all__ = ["IMPLEMENTATION", "FeatureRow", "Parser", "attach", "epochs", "gather", "scan"]

IMPLEMENTATION: Literal["c", "python"]

if TYPE_CHECKING:  # the extension's stub (monitor/_featcols.pyi) is the interface of both
    from monitor._featcols import FeatureRow, Parser, attach, epochs, gather, scan

    IMPLEMENTATION = "c"
elif os.environ.get("DRIFTWATCH_ACCEL", "1") == "0":
    from monitor.accelerator_py import FeatureRow, Parser, attach, epochs, gather, scan

    IMPLEMENTATION = "python"
else:
    try:
        from monitor._featcols import FeatureRow, Parser, attach, epochs, gather, scan

        IMPLEMENTATION = "c"
    except ImportError:  # not built (no compiler at install): the same, in Python
        from monitor.accelerator_py import FeatureRow, Parser, attach, epochs, gather, scan

        IMPLEMENTATION = "python"
