"""Fault tests against real servers: brokers and workers killed, outages (issue 16)."""
