"""Flicker and speed of video stylization for each ``--temporal`` mode.

Two synthetic clips with a known motion, built from a photo in samples/content: the photo panned
by a few pixels a frame (a camera pan), and the still photo with fresh Gaussian sensor noise on
every frame. For each clip and mode the warping error is reported: the mean absolute difference
between stylized frame t+1 and stylized frame t moved by the known motion, divided by the same
measure on the input frames (1.0: the output flickers exactly as much as the input changes; less
is steadier). Frames/s is the throughput of ``Stylizer.stylize_frames`` in the same run.

    PYTHONPATH=. python -m benchmarks.bench_video --style starry
    PYTHONPATH=. python -m benchmarks.bench_video --style starry --size 320 --frames 24 --strip docs/img/video_strip.jpg
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.common import loadavg, machine_info
from styler.config import ApplyConfig, Temporal, VideoConfig
from styler.inference.stylizer import Stylizer
from styler.inference.temporal import warping_error
from styler.io.files import file_sha256
from styler.io.images import load_rgb, pil_to_tensor, resize_longer

ROOT = Path(__file__).resolve().parent.parent
MARGIN = 8  # pixels kept away from the frame edges, where padding (not motion) decides


def panned_clip(photo: torch.Tensor, frames: int, width: int, step: int) -> torch.Tensor:
    """(T, 3, H, width) windows sliding right over ``photo`` (3, H, W) by ``step`` px a frame:
    content moves ``step`` px left per frame, i.e. shift (0, step) for :func:`warping_error`."""
    needed = width + step * (frames - 1)
    if photo.shape[-1] < needed:
        raise ValueError(f"photo is {photo.shape[-1]} px wide; the pan needs {needed}")
    return torch.stack([photo[:, :, t * step:t * step + width] for t in range(frames)])


def noisy_clip(photo: torch.Tensor, frames: int, sigma: float, seed: int = 0) -> torch.Tensor:
    """(T, 3, H, W): the still ``photo`` with fresh Gaussian noise (std ``sigma``) each frame."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((frames, *photo.shape), generator=gen) * sigma
    return (photo[None] + noise).clamp(0, 1)


def relative_warping_error(stylized: torch.Tensor, clip: torch.Tensor, shift: tuple[int, int]) -> float | None:
    """Warping error of the stylized frames over that of the input frames (None when the input's
    is zero: an exact pan of a still photo)."""
    base = warping_error(clip, shift, MARGIN)
    return warping_error(stylized, shift, MARGIN) / base if base > 1e-6 else None


def stylize_clip(stylizer: Stylizer, clip: torch.Tensor, temporal: Temporal, batch: int = 4) -> torch.Tensor:
    """The clip's frames through ``stylize_frames``, (T, 3, H, W) float in [0, 1]."""
    config = VideoConfig(temporal=temporal, batch_size=batch, stats_frames=min(8, len(clip)))
    return torch.stack(list(stylizer.stylize_frames(list(clip), config)))


Clip = tuple[torch.Tensor, tuple[int, int]]  # frames and their motion (dy, dx) per frame


def clips(size: int, frames: int, steps: tuple[int, ...], sigma: float) -> dict[str, Clip]:
    """Named clips of ``size`` px wide frames (3:4) from the astronaut photo: pans by each of ``steps``
    pixels a frame and the still photo with noise."""
    photo = pil_to_tensor(resize_longer(load_rgb(ROOT / "samples/content/astronaut.jpg"), size + max(steps) * frames))
    h = min(photo.shape[-2], size * 3 // 4)
    named = {f"pan {step} px": (panned_clip(photo[:, :h], frames, size, step), (0, step)) for step in steps}
    named[f"noise {sigma:g}"] = (noisy_clip(photo[:, :h, :size], frames, sigma), (0, 0))
    return named


def difference_map(frames: torch.Tensor, shift: tuple[int, int], t: int, gain: float = 4.0) -> torch.Tensor:
    """|frame t+1 - frame t moved by ``shift``| x ``gain`` (black: steady), padded to frame size."""
    dy, dx = shift
    h, w = frames.shape[-2:]
    diff = (frames[t + 1, :, :h - dy, :w - dx] - frames[t, :, dy:, dx:]).abs().mean(0, keepdim=True)
    out = torch.zeros(3, h, w)
    out[:, :h - dy, :w - dx] = (diff * gain).clamp(0, 1)
    return out


def save_strip(rows: list[torch.Tensor], shift: tuple[int, int], path: Path, width: int = 900) -> None:
    """One row per clip (input, then each mode): frames 0, T/3 and 2T/3, then the difference map
    between the last two of those frames' neighbours (what flickers), as one small JPEG."""
    from torchvision.utils import make_grid

    from styler.io.images import tensor_to_pil

    t = len(rows[0])
    picks = [0, t // 3, 2 * t // 3]
    tiles = [tile for row in rows for tile in [*row[picks], difference_map(row, shift, picks[-1])]]
    grid = make_grid(torch.stack(tiles), nrow=len(picks) + 1, padding=2, pad_value=1.0)
    image = tensor_to_pil(grid)
    image.resize((width, round(image.height * width / image.width))).save(path, quality=85)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style", default="starry", help="style name or .safetensors path")
    parser.add_argument("--size", type=int, default=256, help="frame width in pixels")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 3], help="pans in pixels per frame")
    parser.add_argument("--sigma", type=float, default=0.03, help="sensor noise (std, 0..1 scale)")
    parser.add_argument("--strip", type=Path, default=None,
                        help="write a JPEG of the first clip: rows input, off, shared, ema; last column what flickers")
    args = parser.parse_args()
    stylizer = Stylizer.load(args.style, device="cpu", config=ApplyConfig(stroke_scale=1.0))  # figures at S = 1
    info = stylizer.info
    print(json.dumps({"machine": machine_info(torch.device("cpu")), "style": args.style,
                      "weights": str(info.path) if info else None,
                      "weights_sha256": file_sha256(info.path)[:16] if info else None,
                      "trained": info.metadata.get("created_utc") if info else None}))
    strip: list[torch.Tensor] = []
    strip_shift = (0, 0)
    for n, (name, (clip, shift)) in enumerate(clips(args.size, args.frames, tuple(args.steps), args.sigma).items()):
        strip += [clip] if n == 0 else []
        strip_shift = shift if n == 0 else strip_shift
        off = None
        for temporal in Temporal:
            start = time.perf_counter()
            out = stylize_clip(stylizer, clip, temporal)
            fps = len(clip) / (time.perf_counter() - start)
            strip += [out] if n == 0 else []
            error = warping_error(out, shift, MARGIN)
            off = error if temporal is Temporal.OFF else off
            relative = relative_warping_error(out, clip, shift)
            print(json.dumps({"clip": name, "temporal": temporal.value, "frames": len(clip),
                              "size": list(clip.shape[-2:]), "warping_error_255": round(error * 255, 2),
                              "vs_input": None if relative is None else round(relative, 3),
                              "vs_off": round(error / off, 3), "frames_per_s": round(fps, 2), "load": loadavg()}))
    if args.strip:
        save_strip(strip, strip_shift, args.strip)


if __name__ == "__main__":
    main()
