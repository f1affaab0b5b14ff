"""trio-logd's own benchmarks: ``make bench`` (``python -m bench``)."""
