"""The prompt stage of a training round: LiteMedSAM's decoder adapted to the project's objects.

Runs in the trainer child after the U-Net stages (:func:`labelassist.training.tablet_round.run_round`)
when the request asks for it (``RoundRequest.prompt``, written by
:class:`labelassist.session.prompt_model.PromptModels`). It

1. reads the newest ``max_images`` training images and every held-out image (each must still be
   the file the request saw, as the U-Net stages check);
2. embeds the held-out images once and scores the decoder in use on their objects, per object
   with the object's box and with one tap at its interior point;
3. adapts ``weights`` (LiteMedSAM's own, or the decoder in use's when it was adapted before, so
   adaptation goes on across rounds) on the training images' objects for ``budget_s`` seconds
   (:func:`labelassist.training.prompt_adapt.adapt_prompt_decoder`) into ``prompt_candidate.onnx``;
4. scores the adapted decoder on the same objects and embeddings.

It returns the ``prompt`` part of ``result.json``; the kiosk decides
(:func:`labelassist.session.prompt_model.should_install_prompt`). A failure here never fails the
round's U-Net: it comes back as ``{"status": "failed", "reason": ...}``. Child process only.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from labelassist.fileio import file_hash
from labelassist.training.request import RoundRequest

__all__ = ["CANDIDATE_FILE", "WEIGHTS_FILE", "run_prompt_stage"]

CANDIDATE_FILE = "prompt_candidate.onnx"
WEIGHTS_FILE = "prompt_candidate.npz"  # its torch state: the next round goes on from it

Say = Callable[[dict], None]


def run_prompt_stage(request: RoundRequest, masks: dict[int, np.ndarray], folder: Path, say: Say,
                     stop: Callable[[], bool]) -> dict[str, Any]:
    """Adapt and score the prompt decoder; returns the ``prompt`` part of the round's result."""
    from labelassist.training.steps import RoundStopped

    started = time.monotonic()
    try:
        return _run(request, masks, Path(folder), say, stop, started)
    except RoundStopped:
        raise
    except Exception as exc:  # noqa: BLE001 - the U-Net's result still counts
        traceback.print_exc(file=sys.stderr)
        return {"status": "failed", "reason": f"tap-to-segment could not learn ({type(exc).__name__}: {exc})",
                "seconds": round(time.monotonic() - started, 1)}


def _run(request, masks, folder, say, stop, started) -> dict[str, Any]:
    from labelassist.models import BoxSegmenter
    from labelassist.training.prompt_adapt import adapt_prompt_decoder, score_prompt_decoder

    config = request.prompt
    steps_total = 4

    def progress(step: int) -> None:
        say({"stage": "prompt", "step": step, "steps": steps_total})
        if stop():
            from labelassist.training.steps import RoundStopped

            raise RoundStopped

    progress(0)
    segmenter = BoxSegmenter(config["encoder"], config["decoder"], threads=request.threads)
    newest = request.train[:int(config.get("max_images", 10))]  # the request lists the newest first
    train = [(it, img) for it in newest if (img := it.read_image()) is not None]
    held = [(it, img) for it in request.held_out if (img := it.read_image()) is not None]
    train = [(it, img) for it, img in train if masks[it.label_id].any()]
    if not train or not held:
        return {"status": "failed", "reason": "no labelled images left to teach tap-to-segment with",
                "seconds": round(time.monotonic() - started, 1)}
    progress(1)
    samples = [(it.name, img, masks[it.label_id]) for it, img in held]
    embeddings = [segmenter.embed(img) for _, img, _ in samples]
    per_image = int(config.get("objects_per_image", 12))
    before = score_prompt_decoder(segmenter, samples, boxes_per_image=per_image, embeddings=embeddings)
    progress(2)
    out = folder / CANDIDATE_FILE
    def heard(line: dict) -> None:  # the adaptation's own lines, as the prompt stage's progress
        if line.get("stage") == "train" and "step" in line and line.get("of"):
            say({"stage": "prompt", "step": int(line["step"]), "steps": int(line["of"])})
        else:
            say({"stage": "prompt"})

    adapt = adapt_prompt_decoder([(img, masks[it.label_id]) for it, img in train], config["weights"], out,
                                 float(config.get("budget_s", 60.0)), say=heard, segmenter=segmenter,
                                 seed=request.seed, threads=request.threads, out_weights=folder / WEIGHTS_FILE)
    progress(3)
    after = score_prompt_decoder(segmenter.with_decoder(out), samples, boxes_per_image=per_image,
                                 embeddings=embeddings)
    progress(4)
    return {"status": "ok", "reason": f"adapted on {len(train)} labels in {adapt.get('steps')} steps",
            "onnx": out.name, "sha256": file_hash(out), "in_use_sha256": file_hash(Path(config["decoder"])),
            "weights": WEIGHTS_FILE, "weights_sha256": file_hash(folder / WEIGHTS_FILE),
            "before": before, "after": after,
            "trained_on": [it.label_id for it, _ in train], "trained_on_samples": [it.sample_id for it, _ in train],
            "trained_on_names": [it.name for it, _ in train],
            "adapt": {k: adapt[k] for k in ("steps", "seconds", "embed_seconds", "images", "objects",
                                            "loss_first", "loss_last") if k in adapt},
            "seconds": round(time.monotonic() - started, 1)}
