"""ONNX pre-label models: model cards, validation at import, tiled inference, the box prompt.

The kiosk runs segmentation networks with ONNX Runtime on the tablet's CPU; it
never trains and never imports PyTorch or ``onnx`` (only onnxruntime, numpy and
OpenCV). Every model is an ``.onnx`` file with a JSON *model card* beside it
(same stem, ``.json``) that says how to feed it and how to read its output::

    {
      "format": "labelassist-model-card/1",
      "name": "scratch_assay_unet", "version": "1.0.0", "task": "binary_segmentation",
      "input":  {"layout": "NCHW", "channels": 1, "size": "dynamic", "multiple": 16},
      "output": {"kind": "probability", "channels": 1},
      "normalisation": {"kind": "percentile", "low": 0.5, "high": 99.5},
      "scale": 0.5, "threshold": 0.5, "tiling": {"tile": 512, "overlap": 64},
      "training_data": {...}, "metrics": {...}, "licence": "MIT"
    }

* ``input.size`` is ``[H, W]`` for a network with a fixed input, or
  ``"dynamic"`` (then sides are padded to ``input.multiple``);
* ``output.kind`` is ``"logits"`` (a sigmoid is applied), ``"probability"``
  (used as it is) or ``"softmax"`` (class logits over the channel axis, softmax
  applied, ``output.foreground_channel`` is kept, default 1);
* ``normalisation.kind`` is ``"percentile"`` (the image's own ``low``/``high``
  percentiles map to 0 and 1), ``"unit"`` (:func:`labelassist.intensity.as_float01`)
  or ``"meanstd"`` (unit, then ``(x - mean) / std``);
* ``scale`` resizes the image before the network (0.5 = half size); the
  probability map is resized back, so :meth:`Model.predict` always answers in
  the image's own pixel grid.

Images larger than the network's tile are run as overlapping tiles whose
predictions are blended with weights that fall towards each tile's border (the
least reliable part of a fully convolutional prediction).

The public names, by module:

================  ===============================================================================
``card``          ``CARD_FORMAT``, ``ModelCard``, ``ModelError``, ``card_path``, ``read_card``
``inputs``        ``normalise`` (the card's input pixels), ``percentile_normalise``
``runtime``       ``Model`` (``predict(image) -> probability``), ``load_model`` (cached sessions),
                  ``physical_cores``
``tiling``        where the tiles of a large image lie and how they blend (private helpers)
``install``       ``check_model`` (what an import checks), ``CheckReport``, ``suggest_card``,
                  ``MAX_SECONDS``, ``install_model`` / ``project_model`` /
                  ``installed_model_path`` (a project's current model)
``history``       ``HistoryEntry``, ``model_history``, ``current_entry``, ``add_model``, ``activate``
                  (the one atomic switch: install and roll back), ``prune``
``shipped``       ``SHIPPED_DIR``, ``shipped_models`` (``models/index.json``), ``shipped_model``
``box_prompt``    ``BoxSegmenter``, ``BoxEmbedding``, ``find_box_segmenter`` (tap-to-segment)
================  ===============================================================================
"""

from labelassist.models.box_prompt import BoxEmbedding, BoxSegmenter, find_box_segmenter
from labelassist.models.card import CARD_FORMAT, ModelCard, ModelError, card_path, read_card
from labelassist.models.history import HistoryEntry, activate, add_model, current_entry, model_history, prune
from labelassist.models.inputs import normalise, percentile_normalise
from labelassist.models.install import (
    MAX_SECONDS,
    CheckReport,
    check_model,
    install_model,
    installed_model_path,
    project_model,
    suggest_card,
)
from labelassist.models.runtime import Model, load_model, physical_cores
from labelassist.models.shipped import SHIPPED_DIR, shipped_model, shipped_models

__all__ = [
    "CARD_FORMAT",
    "ModelCard",
    "ModelError",
    "Model",
    "CheckReport",
    "BoxSegmenter",
    "BoxEmbedding",
    "find_box_segmenter",
    "card_path",
    "read_card",
    "suggest_card",
    "check_model",
    "load_model",
    "physical_cores",
    "normalise",
    "percentile_normalise",
    "install_model",
    "project_model",
    "installed_model_path",
    "HistoryEntry",
    "model_history",
    "current_entry",
    "add_model",
    "activate",
    "prune",
    "shipped_models",
    "shipped_model",
    "SHIPPED_DIR",
    "MAX_SECONDS",
]
