"""Videos through PyAV: decode, stylize in batches, encode, audio copied unchanged.

    reader thread: demux -> decode -> [items] -> main thread: runs of frames -> FrameStylizer
                                                   -> [encode] -> writer thread: encode, mux

Both queues are bounded, so memory stays flat for a clip of any length. Audio packets travel
through the same queues in demux order and are muxed untouched (no re-encoding). Frames keep their
timestamps (variable frame rates survive), the stream its rate and display rotation. The output is
written under a temporary name in the target folder and renamed when complete: a corrupt input,
a crash or Ctrl-C never leaves a half-written video. PyAV ships ffmpeg's libraries in its wheels,
so there is no ffmpeg to install; it is the optional extra ``styler[video]``.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
import torch.nn.functional as F

from styler.config import VIDEO_EXTENSIONS, Temporal, VideoConfig
from styler.errors import VideoError
from styler.fileio import temp_beside
from styler.temporal import FrameStylizer, runs

if TYPE_CHECKING:
    from styler.apply import Stylizer

OnFrame = Callable[[int, "int | None"], None]
_DONE = object()
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
_CODECS = {".webm": "libvpx-vp9"}  # everything else: H.264
_SUBSAMPLED = ("yuv420p", "yuvj420p", "yuv422p", "nv12")  # chroma at half width: sizes must be even


def require_av() -> Any:
    """The ``av`` module, or a one-line error naming the extra that installs it."""
    try:
        import av
    except ImportError as exc:
        raise VideoError("videos need PyAV: pip install 'styler[video]'") from exc
    return av


def is_video_path(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class Frame:
    """One decoded frame: (3, H, W) uint8 pixels and its timestamp."""

    pixels: torch.Tensor
    pts: int | None
    time_base: Fraction | None
    rotation: int = 0


def _pixels(frame: Any, max_size: int | None) -> torch.Tensor:
    """RGB24 (any input bit depth or chroma layout is converted by swscale) as (3, H, W) uint8."""
    array = frame.to_ndarray(format="rgb24")
    pixels = torch.from_numpy(array).permute(2, 0, 1)
    h, w = pixels.shape[-2:]
    if max_size and max(h, w) > max_size:
        scale = max_size / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        pixels = F.interpolate(pixels[None].float(), size=size, mode="bilinear", antialias=True,
                               align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
    return pixels.contiguous()


class Reader:
    """An input video: its first video stream, its audio streams, frames in demux order."""

    def __init__(self, path: Path, max_size: int | None = None) -> None:
        self.av, self.path, self.max_size = require_av(), Path(path), max_size
        try:
            self.container = self.av.open(str(path))
        except FileNotFoundError as exc:
            raise VideoError(f"{path}: no such file") from exc
        except (self.av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise VideoError(f"{path}: not a video PyAV can read ({_reason(exc)})") from exc
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(f"{path}: has no video stream")
        self.video = self.container.streams.video[0]
        self.audio = list(self.container.streams.audio)

    @property
    def total(self) -> int | None:
        """Frames in the clip: from the header, else estimated from duration and rate."""
        if self.video.frames:
            return int(self.video.frames)
        rate, seconds = self.video.average_rate, self._seconds()
        return round(float(rate) * seconds) or None if rate and seconds else None

    def _seconds(self) -> float | None:
        if self.video.duration and self.video.time_base:
            return float(self.video.duration * self.video.time_base)
        return self.container.duration / 1e6 if self.container.duration else None

    def _frame(self, frame: Any) -> Frame:
        return Frame(_pixels(frame, self.max_size), frame.pts, frame.time_base, int(frame.rotation or 0))

    def items(self) -> Iterator[Any]:
        """Frames and audio packets in demux order; a corrupt stream raises one-line errors."""
        try:
            for packet in self.container.demux(self.video, *self.audio):
                if packet.stream.type == "video":
                    for frame in packet.decode():
                        yield self._frame(frame)
                elif packet.dts is not None:  # the demuxer's final empty packets carry nothing
                    yield packet
        except self.av.FFmpegError as exc:
            raise VideoError(f"{self.path}: corrupt or truncated video ({_reason(exc)})") from exc

    def samples(self, n: int) -> list[torch.Tensor]:
        """About ``n`` frames spread over the clip, found by seeking (cheap on long clips)."""
        seconds = self._seconds()
        if not seconds:
            return []
        found: dict[int, torch.Tensor] = {}
        tb = self.video.time_base
        start = self.video.start_time or 0
        try:
            with self.av.open(str(self.path)) as probe:
                stream = probe.streams.video[0]
                for i in range(n):
                    target = start + int(seconds * (i + 0.5) / n / tb)
                    probe.seek(target, stream=stream)
                    for frame in probe.decode(stream):
                        if frame.pts is None or frame.pts >= target:
                            found.setdefault(frame.pts or 0, _pixels(frame, self.max_size))
                            break
        except self.av.FFmpegError as exc:
            raise VideoError(f"{self.path}: corrupt or truncated video ({_reason(exc)})") from exc
        return list(found.values())

    def close(self) -> None:
        self.container.close()


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).splitlines()[0]


def _even(pixels: torch.Tensor) -> torch.Tensor:
    """Pad the right and bottom edge by one replicated pixel where a side is odd: 4:2:0 needs even
    sizes, and padding (not cropping or scaling) leaves every pixel where it was."""
    h, w = pixels.shape[-2:]
    if not (h % 2 or w % 2):
        return pixels
    return F.pad(pixels[None].float(), (0, w % 2, 0, h % 2), mode="replicate")[0].to(torch.uint8)
