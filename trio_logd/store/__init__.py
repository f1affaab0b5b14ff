"""The store: per-uid append-only record files, their rotation, compression and reading.

Names other packages use: :class:`RotatedName` (a rotated file's name) and
:func:`with_seq` (a record line renumbered).
"""

from trio_logd.record import with_seq
from trio_logd.store._layout import RotatedName

__all__ = ["RotatedName", "with_seq"]
