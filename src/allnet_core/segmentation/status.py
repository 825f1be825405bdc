"""What segmentation reports when it cannot do its job: :class:`SegmentationWarning`.

Segmentation never fails silently on an image it does not understand. It labels nothing
and emits a :class:`SegmentationWarning` through Python's :mod:`warnings`, whose
``reason`` is one of:

:data:`STAIN_NOT_RECOGNISED`
    ``method="auto"``: the candidate white cells look like the field's red cells (four or
    more of them, their nuclei covering half of the stained material): the stain puts red
    cells where nuclei should be, so no cell is labelled rather than every red cell.
:data:`PAPER_SELECTS_NOTHING`
    :func:`~allnet_core.segmentation.segment_paper`: the paper's fixed saturation range
    selects (almost) no pixel; the message gives the image's saturation range and a
    suggestion.

A front end shows them by recording warnings around the call::

    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SegmentationWarning)
        labels = label_cells(rgb)
    for w in caught:
        if issubclass(w.category, SegmentationWarning):
            print(w.message.reason, str(w.message))

or, from a script, turns them into errors with
``warnings.simplefilter("error", SegmentationWarning)``.
"""

from __future__ import annotations

import warnings

__all__ = ["PAPER_SELECTS_NOTHING", "STAIN_NOT_RECOGNISED", "SegmentationWarning"]

STAIN_NOT_RECOGNISED = "stain not recognised"
PAPER_SELECTS_NOTHING = "paper rule selects nothing"


class SegmentationWarning(UserWarning):
    """Segmentation labelled nothing (or almost nothing) for a reason worth telling.

    Attributes
    ----------
    reason : str
        :data:`STAIN_NOT_RECOGNISED` or :data:`PAPER_SELECTS_NOTHING`.
    """

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def warn(reason: str, detail: str, stacklevel: int = 2) -> None:
    """Emit a :class:`SegmentationWarning` (``stacklevel`` counted from the caller)."""
    warnings.warn(SegmentationWarning(reason, detail), stacklevel=stacklevel + 1)
