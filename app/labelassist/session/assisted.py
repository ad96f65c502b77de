"""A sample ready to label (:class:`Assisted`): what the annotator sees when it opens.

Its own module, below both the look-ahead that prepares it and the assistance that reads its
image, so neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labelassist.store import LabelVersion, Sample
from labelassist.workflow.results import Prelabel


@dataclass(frozen=True)
class Assisted:
    """A sample ready to label: what the annotator sees when it opens.

    Attributes
    ----------
    sample : Sample
    image : ndarray
        The raw pixels (uint8, uint16 or float32; grey or RGB).
    display : ndarray of uint8
        The pre-processed image h(x) for the screen, same height and width.
    prelabel : Prelabel or None
        The proposed mask to correct, or None when pre-labelling is off (or
        nothing helps on this project).
    label : LabelVersion or None
        The newest saved label, when the sample was labelled before (the canvas
        starts from it instead of the pre-label).
    prepare_ms : float
        How long preparing took (in the background when it was ready in time).
    """

    sample: Sample
    image: np.ndarray
    display: np.ndarray
    prelabel: Prelabel | None
    label: LabelVersion | None
    prepare_ms: float
    recovered: np.ndarray | None = None
    prediction: np.ndarray | None = None  # the project model's mask, for the disagreement check

    @property
    def start_mask(self) -> np.ndarray:
        """The mask the canvas starts from: unsaved edits recovered from the journal, else the
        saved label, else the pre-label, else empty."""
        if self.recovered is not None:
            return self.recovered.copy()
        if self.label is not None:
            return self.label.mask
        if self.prelabel is not None:
            return self.prelabel.mask.copy()
        return np.zeros(self.image.shape[:2], dtype=bool)


__all__ = ["Assisted"]
