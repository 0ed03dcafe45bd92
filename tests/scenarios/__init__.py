"""Tests of :mod:`monitor.scenarios`, one module per module of the package."""
