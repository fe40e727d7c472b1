"""Stroke scale: run the network at another size, keep the photo's full-resolution detail.

The generator paints strokes of a fixed size in pixels of its input (the training resolution),
so on a big photo they look tiny. Running it on the photo shrunk by S makes them S times larger,
but upscaling that result blurs every edge. The fast guided filter (He & Sun 2015, "Fast Guided
Image Filtering"; He et al. 2013 for the guided filter) fixes that: at the network's resolution
it fits, in every small window, a linear map from the shrunk photo's luminance to each stylized
channel, upsamples the maps' coefficients (smooth, so bilinear upsampling loses little) and
applies them to the full-resolution luminance. Edges of the photo come back sharp; the colours
and strokes stay the network's. Departure: one luminance guide for all channels instead of a
colour guide (no 3x3 inverse per pixel), which is enough for a painting.

The default stroke scale, ``auto``, sizes the strokes to the image rather than to the pixel: a
style trained on crops of ``image_size`` pixels runs at most ``CROPS_PER_SIDE * image_size``
pixels on the longer side (1024 for the bundled styles, trained at 128), so a 4000 px camera
photo gets strokes four times as large as at 1000 px and looks as painted. Smaller images keep
S = 1: finer strokes than the training's would cost compute and lose the painting's look.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from styler.io.images import luma
RADIUS = 2  # window radius at the network's resolution
EPS = 1e-3  # regulariser: larger keeps less of the photo's fine contrast
# Training crops across the longer side at which ``auto`` starts enlarging the strokes. The
# crop and the painting set the strokes' size in pixels (a style trained at 256 px paints
# strokes twice those of one at 128), so the reference scales with the crop; 8 puts it at
# 1024 px for the bundled styles, where they were judged (docs/bundled-styles.md).
CROPS_PER_SIDE = 8
DEFAULT_TRAINING_SIZE = 128  # weights files that do not record their crop size


def auto_stroke_scale(height: int, width: int, training_size: int | None = None) -> float:
    """The stroke scale ``auto`` means for an image of this size (at least 1)."""
    reference = CROPS_PER_SIDE * (training_size or DEFAULT_TRAINING_SIZE)
    return max(1.0, max(height, width) / reference)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of an (N, C, H, W) batch to ``size``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def scaled_size(height: int, width: int, stroke_scale: float) -> tuple[int, int]:
    """The size the network sees for strokes ``stroke_scale`` times larger (at least 1x1)."""
    return max(1, round(height / stroke_scale)), max(1, round(width / stroke_scale))


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window, windows clipped at the border (replicate padding)."""
    k = 2 * radius + 1
    return F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), k, stride=1)


def guided_upsample(low_out: torch.Tensor, low_guide: torch.Tensor, guide: torch.Tensor,
                    radius: int = RADIUS, eps: float = EPS) -> torch.Tensor:
    """``low_out`` (network output at ``low_guide``'s size) brought to ``guide``'s size, with
    ``guide``'s detail: the fast guided filter with luminance guides. All (N, 3, h|H, w|W)."""
    radius = max(0, min(radius, (min(low_out.shape[-2:]) - 1) // 2))
    i, p = luma(low_guide.float()), low_out.float()
    mean_i, mean_p = _box(i, radius), _box(p, radius)
    cov = _box(i * p, radius) - mean_i * mean_p
    var = _box(i * i, radius) - mean_i.square()
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    size = tuple(guide.shape[-2:])
    a, b = resize(_box(a, radius), size), resize(_box(b, radius), size)
    return a * luma(guide.float().to(a.device)) + b


def at_stroke_scale(x: torch.Tensor, stroke_scale: float, network) -> torch.Tensor:
    """``network`` (batch -> stylized batch) run for strokes ``stroke_scale`` times larger; the
    result has ``x``'s size. Above 1 detail comes back by guided upsampling; below 1 the larger
    result is simply shrunk (antialiased)."""
    if stroke_scale == 1:
        return network(x)
    size = scaled_size(*x.shape[-2:], stroke_scale)
    small = resize(x.float(), size)
    out = network(small)
    if stroke_scale < 1:
        return resize(out, tuple(x.shape[-2:]))
    return guided_upsample(out, small.to(out.device), x)
