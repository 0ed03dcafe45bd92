"""Tests of :mod:`monitor.client`, one module per module of the package."""
