"""Steady frames: instance-norm statistics shared across the frames of a clip.

A feed-forward generator flickers on video mostly because every ``InstanceNorm2d`` recomputes
its per-channel mean and variance on every frame: sensor noise or a small pan shifts them, and
with them the colour and the strokes of the whole frame. :mod:`styler.inference.tiling` already
swaps every norm for a :class:`~styler.inference.tiling.FixedStatsNorm` whose statistics can be
set from outside; here the same network gets them from more than one frame
(:class:`styler.config.Temporal`):

* SHARED: one forward pass over frames sampled across the clip in one batch, each norm pooling
  its statistics over all of them (in forward order, so a later norm sees earlier ones already
  pooled, exactly as for one big image); every frame is then normalised with those.
* EMA: each norm blends every frame's statistics (mean and second moment) into a running
  average, frame by frame in order; the average restarts at a scene cut, found from the mean
  absolute difference of small greyscale thumbnails of consecutive frames.

This is the normalisation part of the fix only; optical-flow losses at training time (Ruder et
al. 2016; Huang et al. 2017) are a departure we do not take.
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence, TypeVar

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from styler.config import Temporal, TileStats, VideoConfig
from styler.errors import ConfigError, ImageError
from styler.inference.guided import scaled_size
from styler.inference.tiling import Autocast, FixedStatsNorm, GlobalStatsGenerator, NormMode, downscale, \
    tiled_forward
from styler.io.images import luma

if TYPE_CHECKING:
    from styler.inference.stylizer import Stylizer

Stats = tuple[torch.Tensor, torch.Tensor]
T = TypeVar("T")
THUMB = (24, 32)  # thumbnail for scene-cut detection: detail and noise average out


def pooled(mean: torch.Tensor, var: torch.Tensor) -> Stats:
    """Statistics of a (N, C, 1, 1) batch's per-sample ones pooled as if one image (equal sizes)."""
    m = mean.mean(0, keepdim=True)
    second = (var + mean.square()).mean(0, keepdim=True)
    return m, (second - m.square()).clamp_min(0.0)


class SceneCuts:
    """Flags the frames that start a new shot: the first, and any whose thumbnail differs from
    the previous frame's by more than ``threshold`` (mean absolute difference, 0..1)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.previous: torch.Tensor | None = None

    @staticmethod
    def thumbnails(batch: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(luma(batch.float()), THUMB)[:, 0]

    def __call__(self, batch: torch.Tensor) -> list[bool]:
        """(N, 3, H, W) in [0, 1], the next frames in order -> one flag per frame."""
        thumbs = self.thumbnails(batch).cpu()
        cuts = []
        for thumb in thumbs:
            cut = self.previous is None or self.previous.shape != thumb.shape or \
                float((thumb - self.previous).abs().mean()) > self.threshold
            cuts.append(cut)
            self.previous = thumb
        return cuts


class _Ema:
    """One norm's running statistics; ``resets`` (shared with the owner) flags new shots."""

    def __init__(self, decay: float, resets: list[bool]) -> None:
        self.decay, self.resets = decay, resets
        self.mean: torch.Tensor | None = None
        self.second: torch.Tensor | None = None

    def __call__(self, mean: torch.Tensor, var: torch.Tensor) -> Stats:
        means, variances = [], []
        for i in range(mean.shape[0]):  # frames in order: each one's average includes it
            m, s = mean[i:i + 1], var[i:i + 1] + mean[i:i + 1].square()
            if self.mean is None or self.second is None or self.resets[i]:
                self.mean, self.second = m, s
            else:
                self.mean = torch.lerp(m, self.mean, self.decay)
                self.second = torch.lerp(s, self.second, self.decay)
            means.append(self.mean)
            variances.append((self.second - self.mean.square()).clamp_min(0.0))
        return torch.cat(means), torch.cat(variances)


class SteadyNorms:
    """The temporal state of one clip over a :class:`GlobalStatsGenerator`'s norms."""

    def __init__(self, model: GlobalStatsGenerator, config: VideoConfig) -> None:
        self.model, self.temporal = model, config.temporal
        self.cuts = SceneCuts(config.cut_threshold)
        self.resets: list[bool] = []
        self.smoothers = {id(n): _Ema(config.ema_decay, self.resets) for n in model.norms}
        self.shared: dict[int, Stats] = {}

    def _set(self, mode: NormMode, smooth: Callable[[FixedStatsNorm], object] | None = None) -> None:
        for norm in self.model.norms:
            norm.mode = mode
            norm.smooth = smooth(norm) if smooth else None  # type: ignore[assignment]

    @torch.no_grad()
    def share(self, frames: torch.Tensor, stats_size: int | None, forward: Callable[[torch.Tensor], object]) -> None:
        """SHARED: pool every norm's statistics over ``frames`` (N, 3, H, W), shrunk so the longer
        side is at most ``stats_size``; ``forward`` runs the model (device, autocast)."""
        self._set(NormMode.SMOOTH, lambda norm: pooled)
        try:
            forward(downscale(frames.float(), stats_size) if stats_size else frames.float())
        finally:
            self._set(NormMode.FIXED)
        self.shared = {id(n): (n.mean, n.var) for n in self.model.norms}  # type: ignore[misc]

    @contextmanager
    def frames(self, batch: torch.Tensor) -> Iterator[None]:
        """Norm modes for stylizing the next ``batch`` of frames (in clip order)."""
        if self.temporal is Temporal.SHARED:
            if not self.shared:
                raise RuntimeError("SteadyNorms: share() must run before SHARED frames")
            for norm in self.model.norms:
                norm.mean, norm.var = self.shared[id(norm)]
            self._set(NormMode.FIXED)
        else:
            self.resets[:] = self.cuts(batch)
            self._set(NormMode.SMOOTH, lambda norm: self.smoothers[id(norm)])
        try:
            yield
        finally:
            self._set(NormMode.PLAIN)


def steady_forward(norms: SteadyNorms, x: torch.Tensor, tile: int | None, device: torch.device,
                   autocast: Autocast, stats_size: int) -> torch.Tensor:
    """Raw generator output for a batch of consecutive frames with the clip's statistics. Frames
    too big to run whole get their (EMA) statistics from a ``stats_size`` copy, then run in tiles."""
    model = norms.model
    with norms.frames(x):
        if tile is None:
            with autocast():
                return model(x.to(device)).float()
        with autocast():
            model(downscale(x.float(), stats_size).to(device))  # SMOOTH records, SHARED is fixed already
        model._set_mode(NormMode.FIXED)
        return tiled_forward(model, x, tile, device, autocast, stats=TileStats.DOWNSCALED,
                             collect=False)


class FrameStylizer:
    """Stylizes the consecutive frames of one clip, (N, 3, H, W) uint8 batches in clip order,
    with the clip's temporal statistics (a fresh one per clip: it holds the clip's state)."""

    def __init__(self, stylizer: "Stylizer", config: VideoConfig) -> None:
        self.stylizer, self.config = stylizer, config
        self.temporal = config.temporal
        self.norms = None if self.temporal is Temporal.OFF else \
            SteadyNorms(stylizer.stats_model(), config)

    @property
    def needs_samples(self) -> bool:
        return self.norms is not None and self.temporal is Temporal.SHARED and not self.norms.shared

    @torch.inference_mode()
    def share(self, samples: Sequence[torch.Tensor]) -> None:
        """SHARED: take the statistics from these frames ((3, H, W) uint8, any sizes: each is
        brought to the first one's) at the size the network will see them."""
        assert self.norms is not None
        size = scaled_size(*samples[0].shape[-2:], self.stylizer.stroke_scale_for(*samples[0].shape[-2:]))
        x = torch.stack([F.interpolate(s[None].float().div(255), size=size, mode="bilinear", antialias=True,
                                       align_corners=False)[0] for s in samples])
        st = self.stylizer
        model = self.norms.model

        def forward(batch: torch.Tensor) -> object:
            with st._autocast():
                return model(batch.to(st.device))

        self.norms.share(x, st.config.stats_size, forward)

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        st = self.stylizer
        assert self.norms is not None
        return steady_forward(self.norms, x, st.tile_size(*x.shape[-2:]), st.device, st._autocast,
                              st.config.stats_size)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 consecutive frames -> stylized uint8 frames on the CPU."""
        if self.needs_samples:
            self.share(list(frames))
        network = None if self.norms is None else self._network
        out = self.stylizer.stylize_tensor(frames.float().div_(255), network)
        return out.cpu().clamp(0, 1).mul(255).round().to(torch.uint8)


def runs(items: Iterable[T], is_frame: Callable[[T], bool], size: Callable[[T], tuple[int, ...]],
         batch_size: int) -> Iterator[list[T]]:
    """Group a stream into runs holding at most ``batch_size`` frames of one size (other items,
    such as audio packets, ride along in order)."""
    pending: list[T] = []
    count, key = 0, None
    for item in items:
        if is_frame(item):
            if count and size(item) != key:
                yield pending
                pending, count = [], 0
            key = size(item)
            count += 1
        pending.append(item)
        if count == batch_size:
            yield pending
            pending, count = [], 0
    if pending:
        yield pending


def _shape(frame: Image.Image | torch.Tensor) -> tuple[int, ...]:
    return (3, frame.height, frame.width) if isinstance(frame, Image.Image) else tuple(frame.shape)


def _to_uint8(frame: Image.Image | torch.Tensor) -> torch.Tensor:
    if isinstance(frame, Image.Image):
        return TF.pil_to_tensor(frame.convert("RGB"))
    if frame.ndim != 3 or frame.shape[0] != 3:
        raise ImageError(f"expected (3, H, W) frames, got shape {tuple(frame.shape)}")
    return frame if frame.dtype == torch.uint8 else frame.float().clamp(0, 1).mul(255).round().to(torch.uint8)


def stylize_frames(stylizer: "Stylizer", frames: Iterable[Image.Image | torch.Tensor],
                   config: VideoConfig) -> Iterator[Image.Image | torch.Tensor]:
    """See :meth:`styler.inference.stylizer.Stylizer.stylize_frames`."""
    if not isinstance(config, VideoConfig):  # checked now, not at the first frame
        raise ConfigError(f"config must be a VideoConfig (VideoConfig(temporal=...) sets the steadying), "
                          f"got {config!r}")
    return _stylized(FrameStylizer(stylizer, config), frames, config)


def _stylized(steady: "FrameStylizer", frames: Iterable[Image.Image | torch.Tensor],
              config: VideoConfig) -> Iterator[Image.Image | torch.Tensor]:
    stream: Iterator[Image.Image | torch.Tensor] = iter(frames)
    if steady.needs_samples:  # SHARED on a stream: statistics of its first frames
        stream = _shared_from_head(steady, stream, config.stats_frames)
    for run in runs(stream, lambda f: True, _shape, config.batch_size):
        out = steady(torch.stack([_to_uint8(f) for f in run]))
        yield from (_like(original, pixels) for original, pixels in zip(run, out))


def _shared_from_head(steady: FrameStylizer, stream: Iterator[T], n: int) -> Iterator[T]:
    """``stream`` unchanged, after ``steady`` took its shared statistics from the first ``n`` frames."""
    head = list(itertools.islice(stream, n))
    if head:
        steady.share([_to_uint8(f) for f in head])
    return itertools.chain(head, stream)


def _like(original: Image.Image | torch.Tensor, pixels: torch.Tensor) -> Image.Image | torch.Tensor:
    """A stylized (3, H, W) uint8 frame as the kind ``original`` came in."""
    if isinstance(original, Image.Image):
        return TF.to_pil_image(pixels)
    return pixels if original.dtype == torch.uint8 else pixels.float().div(255)


def warping_error(frames: torch.Tensor, shift: tuple[int, int] = (0, 0), margin: int = 0) -> float:
    """Mean absolute difference between frame t+1 and frame t moved by the known ``shift``
    (dy, dx pixels per frame: content at (y, x) in frame t is at (y - dy, x - dx) in frame t+1),
    over the pixels both frames show, ``margin`` pixels in from the edges. (T, 3, H, W)."""
    dy, dx = shift
    h, w = frames.shape[-2:]
    nxt = frames[1:, :, margin:h - dy - margin, margin:w - dx - margin].float()
    prev = frames[:-1, :, dy + margin:h - margin, dx + margin:w - margin].float()
    return float((nxt - prev).abs().mean())
