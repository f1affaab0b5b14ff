"""What the store reads from a record line without decoding its JSON: the record codec's readers.

The layout and its readers are ``trio_logd.record``'s (one codec for the
line); these names stay for the store's modules that import them from here.
"""

from __future__ import annotations

from trio_logd.record import SEQ_AT, TS_AT, daemon_event, line_seq, ts_epoch, with_seq

__all__ = ["SEQ_AT", "TS_AT", "daemon_event", "line_seq", "ts_epoch", "with_seq"]
