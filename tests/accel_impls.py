"""Both implementations of the decoder's accelerator in one test run: the ``accel`` fixture.

``monitor.accelerator`` takes the C extension when it is built; a module that uses the fixture
(``pytestmark = pytest.mark.usefixtures("accel")``, or an ``accel`` argument) runs each of its
tests once with it (``[c]``) and once with the pure-Python twin (``[python]``). The twin is
swapped in by rebinding, in every loaded module of driftwatch and its tests, each module global
that is one of the extension's objects (``from monitor.accelerator import scan`` made one) to
the twin's; the fixture is module-scoped, so a test module runs all its tests on one, then on
the other. Objects made before the swap keep what they hold (a ``FeatureSchema`` compiled at
import keeps its C parser): build those in the tests. Where the extension is not built (or
``DRIFTWATCH_ACCEL=0``) the fixture has the twin only.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FunctionType
from typing import Any, NamedTuple

import pytest

import monitor.accelerator_py as twin
from monitor import accelerator

NAMES = ("FeatureRow", "Parser", "attach", "epochs", "gather", "scan")
#: Where the swap rebinds names (the implementations themselves excepted).
PACKAGES = ("monitor", "detectors", "alerting", "tests")
SKIP = ("monitor._featcols", "monitor.accelerator_py")


class Impl(NamedTuple):
    """One implementation's objects, by the names of ``monitor.accelerator``."""

    name: str
    FeatureRow: Any
    Parser: Any
    attach: Any
    epochs: Any
    gather: Any
    scan: Any


def _impl(name: str, source: Any) -> Impl:
    return Impl(name, *(getattr(source, n) for n in NAMES))


#: The implementation this process imported (C unless not built or DRIFTWATCH_ACCEL=0).
NATIVE = _impl(accelerator.IMPLEMENTATION, accelerator)
PYTHON = _impl("python", twin)
IMPLS = {"c": NATIVE, "python": PYTHON} if NATIVE.name == "c" else {"python": PYTHON}


def _dress(row: type, like: type) -> None:
    """Give the twin's row type what driftwatch installed on the C one (monitor.fastrow makes
    it read like a Mapping), as it does when the twin is the one imported."""
    for key, value in vars(like).items():
        if isinstance(value, FunctionType) or (key == "__hash__" and value is None):
            setattr(row, key, value)
    if issubclass(like, Mapping):
        Mapping.register(row)


def _rebind(swap: dict[int, Any], mp: pytest.MonkeyPatch | None) -> None:
    """Rebind every module global of :data:`PACKAGES` whose value's id is in ``swap``."""
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in PACKAGES or name.startswith(SKIP):
            continue
        for attr, value in list(vars(module).items()):
            other = swap.get(id(value))
            if other is not None:
                if mp is not None:
                    mp.setattr(module, attr, other)
                else:
                    setattr(module, attr, other)


@contextmanager
def using(impl: Impl) -> Iterator[Impl]:
    """Run with ``impl`` in place of the imported implementation."""
    if impl.name == NATIVE.name:
        yield impl
        return
    _dress(impl.FeatureRow, NATIVE.FeatureRow)
    native = {id(getattr(NATIVE, n)): getattr(impl, n) for n in NAMES}
    try:
        with pytest.MonkeyPatch.context() as mp:
            _rebind(native, mp)
            mp.setattr(accelerator, "IMPLEMENTATION", impl.name)
            yield impl
    finally:
        # A module first imported during the swap took the twin's objects from its importers;
        # the monkeypatch does not know it: give it the native ones back.
        _rebind({id(getattr(impl, n)): getattr(NATIVE, n) for n in NAMES}, None)


@pytest.fixture(scope="module", params=list(IMPLS))
def accel(request: pytest.FixtureRequest) -> Iterator[Impl]:
    """The implementation the tests of this module run on (see the module docstring)."""
    with using(IMPLS[request.param]) as impl:
        yield impl
