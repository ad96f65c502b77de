"""A trainable PyTorch U-Net from an exported ONNX U-Net: the warm start of a tablet round.

No ``.pt`` file is shipped, only ONNX graphs. Every U-Net this repository exports
(:func:`labelassist.training.core.export_onnx`) has its BatchNorm folded into the
convolutions, so it loads one for one into ``core.build_unet(base, depth, batch_norm=False)``.
The 3x3 convolutions have anonymous initializers (``onnx::Conv_188``), so each weight is
matched by its **node** name, which names the torch module: ``/net/down.0/down.0.3/Conv``
is ``down.0.3``, ``/net/up.1/ConvTranspose`` is ``up.1``, ``/net/head/Conv`` is ``head``.

The loaded network is checked against ONNX Runtime on a probe input; a difference above
:data:`MAX_DIFFERENCE` is refused, as is a card whose architecture is not a U-Net.

Child process only: imports torch and onnx.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labelassist.errors import LabelAssistError

__all__ = ["MAX_DIFFERENCE", "unet_from_onnx", "onnx_weights"]

#: Largest probability difference from ONNX Runtime accepted on the probe input.
MAX_DIFFERENCE = 1e-4


def _card_dict(card: Any) -> dict:
    return card.to_dict() if hasattr(card, "to_dict") else dict(card)


def onnx_weights(onnx_path: Path) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """``{torch module name: (weight, bias or None)}`` of every Conv and ConvTranspose node.

    The module name is the node name's scope below ``/net/`` (the export's wrapper).
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    weights: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for node in graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        scopes = node.name.strip("/").split("/")
        if len(scopes) < 3 or scopes[0] != "net":
            raise LabelAssistError(f"{Path(onnx_path).name}: the {node.op_type} node {node.name!r} is not named "
                                   "like a U-Net exported by this app")
        module = scopes[-2]
        if node.input[1] not in initializers:
            raise LabelAssistError(f"{Path(onnx_path).name}: the weights of {module} are not plain fp32 numbers "
                                   "(a quantised model cannot be trained further)")
        if module in weights:
            raise LabelAssistError(f"{Path(onnx_path).name}: two convolutions are named {module}")
        bias = initializers.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        weights[module] = (initializers[node.input[1]], bias)
    return weights


def unet_from_onnx(onnx_path: Path, card: Any) -> "Any":
    """The U-Net of an exported ONNX graph as a trainable ``torch.nn.Module`` (logits, no BN).

    Parameters
    ----------
    onnx_path : Path
        An fp32 U-Net exported by :func:`labelassist.training.core.export_onnx`.
    card : dict or ModelCard
        Its card; ``architecture`` gives ``type`` (must be ``"unet"``), ``base`` and ``depth``.

    Returns
    -------
    torch.nn.Module
        ``core.build_unet(base, depth, batch_norm=False)`` holding the graph's weights, in eval mode.

    Raises
    ------
    LabelAssistError
        The card is not a U-Net's, a weight is missing or of another shape, or the network
        differs from ONNX Runtime by more than :data:`MAX_DIFFERENCE` on a probe input.
    """
    import torch

    from labelassist.training import core

    onnx_path = Path(onnx_path)
    card = _card_dict(card)
    arch = card.get("architecture") or {}
    if arch.get("type") != "unet":
        raise LabelAssistError(f"{onnx_path.name} cannot be trained further on this tablet: its card says its "
                               f"architecture is {arch.get('type') or 'not given'}, not a U-Net")
    try:
        base, depth = int(arch["base"]), int(arch["depth"])
    except (KeyError, TypeError, ValueError):
        raise LabelAssistError(f"{onnx_path.name}: its card gives no U-Net base and depth") from None
    net = core.build_unet(base, depth, batch_norm=False)
    weights = onnx_weights(onnx_path)
    layers = {name: m for name, m in net.named_modules()
              if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))}
    if set(weights) != set(layers):
        raise LabelAssistError(f"{onnx_path.name} is not the U-Net its card describes (base {base}, depth {depth}): "
                               f"{len(weights)} convolutions in the graph, {len(layers)} in the network")
    with torch.no_grad():
        for name, layer in layers.items():
            weight, bias = weights[name]
            if tuple(weight.shape) != tuple(layer.weight.shape) or bias is None or \
                    tuple(bias.shape) != tuple(layer.bias.shape):
                raise LabelAssistError(f"{onnx_path.name}: {name} does not fit a U-Net of base {base}, depth {depth}")
            layer.weight.copy_(torch.from_numpy(np.array(weight, np.float32)))
            layer.bias.copy_(torch.from_numpy(np.array(bias, np.float32)))
    net.eval()
    difference = probe_difference(net, onnx_path, 2 ** depth)
    if not difference <= MAX_DIFFERENCE:
        raise LabelAssistError(f"{onnx_path.name} could not be loaded exactly for training (it differs from "
                               f"ONNX Runtime by {difference:.2g})")
    return net


def probe_difference(net, onnx_path: Path, multiple: int, seed: int = 0) -> float:
    """Largest difference between ``sigmoid(net(x))`` and the ONNX graph's output on a random probe."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).random((1, 1, multiple * 6, multiple * 5), dtype=np.float32)
    with torch.no_grad():
        mine = torch.sigmoid(net(torch.from_numpy(x))).numpy()
    theirs = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float(np.abs(mine - theirs).max())
