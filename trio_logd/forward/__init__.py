"""Forwarding to a central collector: the pure parts (see ``docs/forwarding.md``).

RFC 5424 encoding of stored records with the trusted fields in their own
structured-data element (:data:`SD_ID`), the per-destination filter, and the
cursor that says how far the collector surely has the records. The sockets,
files and tasks are in ``trio_logd.server._forward``.
"""

from __future__ import annotations

from trio_logd.forward.cursor import CURSOR_FORMAT, DeliveryLedger, decode_cursor, encode_cursor
from trio_logd.forward.filter import RecordFilter
from trio_logd.forward.rfc5424 import (
    CLAIMS_SD_ID,
    FIELDS_SD_ID,
    SD_ID,
    encode_record,
    frame,
    make_encoder,
    make_framer,
    sd_name,
)

__all__ = [
    "CLAIMS_SD_ID",
    "CURSOR_FORMAT",
    "FIELDS_SD_ID",
    "SD_ID",
    "DeliveryLedger",
    "RecordFilter",
    "decode_cursor",
    "encode_cursor",
    "encode_record",
    "frame",
    "make_encoder",
    "make_framer",
    "sd_name",
]
