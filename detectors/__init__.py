"""Pure drift, data-quality, latency and performance statistics.

Nothing here does I/O or imports :mod:`monitor` or :mod:`alerting`: the functions take
numpy arrays and plain numbers and return numbers, so they are tested with plain calls.
"""
