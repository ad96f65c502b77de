"""Example plug-in: a pre-label for unevenly lit images (local, adaptive threshold).

Copy this file into a project's ``plugins/`` folder; the next session lists
``adaptive_threshold`` among the pre-label methods, and ``labelassist evaluate
prelabel PROJECT --methods otsu,adaptive_threshold`` measures it against the
labels already made. A plug-in is an ordinary Python file that registers
functions with :func:`labelassist.workflow.registry.register`; it must not
import Kivy and must not touch the database.
"""

import cv2

from labelassist.errors import PluginError
from labelassist.intensity import to_display
from labelassist.workflow.prelabel import Prelabel
from labelassist.workflow.registry import Param, register


@register(
    "prelabel",
    "adaptive_threshold",
    params=[
        Param("block", int, 51, low=3, high=1001, help="Size of the neighbourhood, pixels (odd)."),
        Param("offset", float, 0.0, low=-100, high=100, help="Subtracted from the local mean, grey levels."),
        Param("bright", bool, True, help="Objects are brighter than their surroundings."),
    ],
)
def adaptive_threshold(image, context=None, block=51, offset=0.0, bright=True):
    """Local mean threshold: each pixel is compared with the mean of its neighbourhood."""
    grey = to_display(image)
    if grey.ndim == 3:
        grey = cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY)
    if grey.min() == grey.max():
        raise PluginError("the image is blank: there is nothing to threshold")
    block = block if block % 2 == 1 else block + 1
    mode = cv2.THRESH_BINARY if bright else cv2.THRESH_BINARY_INV
    mask = cv2.adaptiveThreshold(grey, 1, cv2.ADAPTIVE_THRESH_MEAN_C, mode, block, offset)
    return Prelabel(mask=mask.astype(bool), probability=None, method="adaptive_threshold")
