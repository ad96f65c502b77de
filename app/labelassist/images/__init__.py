"""Reading images, stacks and videos; masks; finding sequences; thumbnails.

Everything the application knows about image files goes through this package:

* :func:`probe` lists the frames of a file (one per TIFF page or video frame)
  without decoding pixels where the format allows it;
* :func:`read_image` and :func:`read_mask` decode one frame into a numpy array
  with a small, fixed set of layouts and dtypes that the rest of the code can
  rely on;
* :func:`discover` walks the folders a user imports and groups their frames
  into sequences;
* :func:`thumbnail` turns any supported image into small 8-bit pixels for
  the screen (the conversion itself lives in :mod:`labelassist.intensity`).

Arrays returned by :func:`read_image` are ``(H, W)`` grey or ``(H, W, 3)`` RGB
with dtype ``uint8``, ``uint16`` or ``float32``; nothing else leaves this package.
Frames larger than :data:`MAX_BYTES` once decoded are refused before decoding, and
every loop over the pages or frames of a file stops at :data:`MAX_FRAMES`.
Every problem a user can cause (missing, empty, truncated, unsupported or
absurdly large files, headers that declare more pixels than the file can hold,
page directories that loop, non-binary masks) raises
:class:`~labelassist.errors.ImageReadError` or
:class:`~labelassist.errors.MaskError` with one sentence naming the file.

The public names, by module:

=================================  ===========================================================
:mod:`~labelassist.images.frames`  ``IMAGE_EXTENSIONS``, ``VIDEO_EXTENSIONS``,
                                   ``TIFF_EXTENSIONS``, ``MAX_BYTES``, ``MAX_PIXELS``,
                                   ``FrameInfo``: the files accepted and the arrays returned
``headers``                        what a PNG, JPEG or BMP header says before decoding (private)
``decode``                         ``MAX_FRAMES``, ``probe``, ``read_image``, ``tiff_planes``
``masks``                          ``read_mask``, ``read_mask_details``, ``MaskRead``
``sequences``                      ``discover``, ``DiscoverResult``, ``SourceFrame``,
                                   ``natural_key``
``thumbnails``                     ``thumbnail``, ``ThumbnailCache``
=================================  ===========================================================

Hashing a file and a path as stored text are in :mod:`labelassist.fileio`; text made safe to
print is in :mod:`labelassist.textout`.
"""

from labelassist.images.decode import MAX_FRAMES, probe, read_image, tiff_planes
from labelassist.images.frames import (
    IMAGE_EXTENSIONS,
    MAX_BYTES,
    MAX_PIXELS,
    TIFF_EXTENSIONS,
    VIDEO_EXTENSIONS,
    FrameInfo,
)
from labelassist.images.masks import MaskRead, read_mask, read_mask_details
from labelassist.images.sequences import DiscoverResult, SourceFrame, discover, natural_key
from labelassist.images.thumbnails import ThumbnailCache, thumbnail

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "MAX_BYTES",
    "MAX_PIXELS",
    "MAX_FRAMES",
    "FrameInfo",
    "SourceFrame",
    "DiscoverResult",
    "probe",
    "read_image",
    "read_mask",
    "read_mask_details",
    "MaskRead",
    "tiff_planes",
    "natural_key",
    "discover",
    "thumbnail",
    "ThumbnailCache",
]
