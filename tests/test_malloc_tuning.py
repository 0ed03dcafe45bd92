"""monitor.malloc_tuning: glibc's mallopt is applied unless the operator tuned malloc."""

from __future__ import annotations

import ctypes
import os

import pytest

from monitor.malloc_tuning import keep_freed_memory


def test_the_settings_take_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(key)
    assert hasattr(ctypes.CDLL(None), "mallopt")  # the machines this runs on use glibc
    assert keep_freed_memory() is True


def test_an_operators_malloc_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
