"""Tests of :mod:`monitor.client`."""
