"""The pure-Python twin of the C extension ``monitor/_featcols.c``, for where none was built.

Same names, same results to the bit, same refusals and exceptions: :class:`FeatureRow`,
:func:`attach`, :func:`gather` and :func:`epochs` (rows of parsed features and event times,
:mod:`.rows`), :func:`scan` (the one pass over JSON text that checks what pydantic refuses
anywhere in it, :mod:`.scan`) and :class:`Parser` (a compiled schema's feature parser,
:mod:`.features`). Import them from :mod:`monitor.accelerator`, which takes the C extension
when it is there; ``tests/accel_impls.py`` runs the decoder's tests over both.
"""

from monitor.accelerator_py.features import Parser
from monitor.accelerator_py.rows import FeatureRow, attach, epochs, gather
from monitor.accelerator_py.scan import scan

__all__ = ["FeatureRow", "Parser", "attach", "epochs", "gather", "scan"]
