"""The class names of the task, in model output order: the one home of this constant.

ALLNet has two outputs, ``(HEM, ALL)``: index 0 is a healthy (HEM) cell, index 1 a
leukemic blast (ALL), which is the positive class of every metric.

>>> CLASS_NAMES[POSITIVE_INDEX]
'ALL'
"""

from __future__ import annotations

__all__ = ["CLASS_NAMES", "NEGATIVE_CLASS", "POSITIVE_CLASS", "POSITIVE_INDEX"]

#: Output classes of an ALLNet model, in order.
CLASS_NAMES: tuple[str, str] = ("HEM", "ALL")
#: The class that metrics call positive (recall = sensitivity to blasts).
POSITIVE_CLASS = "ALL"
#: The class that metrics call negative.
NEGATIVE_CLASS = "HEM"
#: Index of :data:`POSITIVE_CLASS` in :data:`CLASS_NAMES`.
POSITIVE_INDEX = CLASS_NAMES.index(POSITIVE_CLASS)
