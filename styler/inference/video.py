"""Videos and animated images through the network, frames in order, steadied by
:mod:`styler.inference.temporal`.

    reader thread: demux -> decode -> [items] -> main thread: runs of frames -> FrameStylizer
                                                   -> [encode] -> writer thread: encode, mux

Both queues are bounded, so memory stays flat for a clip of any length. Audio packets travel
through the same queues in demux order and reach the writer (which copies them, or encodes them
again where the container needs another codec). After the first batch, ``on_estimate`` gets an
:class:`Estimate` of the whole clip's time, so a caller can say early that a clip is long and
what shortens it. Decoding and encoding
(:class:`styler.io.video.Reader`, :class:`~styler.io.video.Writer`) and animated images' files
(:mod:`styler.io.animation`) live in :mod:`styler.io`.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from styler.config import VideoConfig
from styler.errors import VideoError
from styler.inference.pipeline import _Threads
from styler.inference.stylizer import join_alpha
from styler.inference.temporal import FrameStylizer, runs
from styler.io.animation import animation_format, is_animated, read_animation, save_animation
from styler.io.images import split_alpha
from styler.io.video import FORMATS, Frame, Reader, Writer, is_video_path

if TYPE_CHECKING:
    from styler.inference.stylizer import Stylizer

OnFrame = Callable[[int, "int | None"], None]
_DONE = object()
# A clip expected to take longer than this is long: worth a note on what shortens it.
LONG_VIDEO_SECONDS = 120.0
SMALLER_FRAMES = 720  # the longer side suggested for long clips of larger frames


@dataclass(frozen=True)
class Estimate:
    """A clip's expected stylizing time, from the speed of its first batch of frames."""

    frames: int
    frames_per_second: float
    height: int  # of the frames as decoded (after max_size)
    width: int
    stroke_scale: float

    @property
    def seconds(self) -> float:
        return self.frames / self.frames_per_second

    @property
    def long(self) -> bool:
        return self.seconds > LONG_VIDEO_SECONDS

    @property
    def duration(self) -> str:
        """``45 s``, ``17 min``, ``2 h 12 min``."""
        seconds = round(self.seconds)
        if seconds < 90:
            return f"{seconds} s"
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes} min" if hours else f"{minutes} min"

    def shorter(self) -> list[tuple[str, float, float]]:
        """(ApplyConfig field, value, times fewer pixels through the network) for each setting
        that shortens the run: frames 720 px long where that halves their pixels at least, and
        strokes twice as large (the network runs at half the size; the detail comes back)."""
        options = []
        fewer = (max(self.height, self.width) / SMALLER_FRAMES) ** 2
        if fewer >= 2:
            options.append(("max_size", SMALLER_FRAMES, fewer))
        options.append(("stroke_scale", self.stroke_scale * 2, 4.0))
        return options


OnEstimate = Callable[[Estimate], None]


class _Cancelled(Exception):
    """A worker thread stops because the run is being torn down."""


class VideoJob:
    """One video through the threaded pipeline of the module docstring."""

    def __init__(self, stylizer: "Stylizer", config: VideoConfig, on_frame: OnFrame | None,
                 on_estimate: OnEstimate | None = None) -> None:
        self.stylizer, self.config, self.on_frame, self.on_estimate = stylizer, config, on_frame, on_estimate
        self.stop = threading.Event()
        self.threads = _Threads()
        depth = 2 * config.batch_size + 8
        self.decoded: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.encoded: queue.Queue[Any] = queue.Queue(maxsize=depth)

    def _put(self, target: queue.Queue[Any], item: Any) -> None:
        while not self.stop.is_set():
            try:
                return target.put(item, timeout=0.2)
            except queue.Full:
                self.threads.check()
        raise _Cancelled

    def _drain(self, source: queue.Queue[Any]) -> Iterator[Any]:
        while not self.stop.is_set():
            try:
                item = source.get(timeout=0.2)
            except queue.Empty:
                self.threads.check()  # a crashed reader (a corrupt file) surfaces here
                continue
            if item is _DONE:
                return
            yield item
        raise _Cancelled

    def _read(self, reader: Reader) -> None:
        # Cancelled: the main thread tore the job down and raises the reason itself.
        with contextlib.suppress(_Cancelled):
            for item in reader.items():
                self._put(self.decoded, item)
            self._put(self.decoded, _DONE)

    def _write(self, writer: Writer) -> None:
        with contextlib.suppress(_Cancelled):  # as in _read
            for item in self._drain(self.encoded):
                writer.write(item)

    def run(self, src: Path, dst: Path) -> int:
        reader = Reader(src, self.stylizer.config.max_size)
        try:
            writer = Writer(dst, reader, self.config)
            steady = FrameStylizer(self.stylizer, self.config)
            if steady.needs_samples and (samples := reader.samples(self.config.stats_frames)):
                steady.share(samples)
            try:
                self._stylize(reader, writer, steady)
                writer.finish()
            except BaseException as exc:
                self.stop.set()
                for thread in self.threads.threads:
                    thread.join()
                writer.abort(exc)
                raise
            return writer.frames
        finally:
            reader.close()

    def _stylize(self, reader: Reader, writer: Writer, steady: FrameStylizer) -> None:
        total, done = reader.total, 0
        self._report(done, total)
        self.threads.start(self._read, reader)
        self.threads.start(self._write, writer)
        is_frame = lambda item: isinstance(item, Frame)  # noqa: E731
        for run in runs(self._drain(self.decoded), is_frame, lambda f: tuple(f.pixels.shape), self.config.batch_size):
            start = time.perf_counter()
            frames = self._stylize_run(run, steady)
            if frames and not done:
                self._estimate(run, frames, time.perf_counter() - start, total)
            done += frames
            self._report(done, total)
        self._put(self.encoded, _DONE)
        self.threads.join()

    def _stylize_run(self, run: list[Any], steady: FrameStylizer) -> int:
        """Stylize the frames of ``run`` in place and hand every item to the writer, in order;
        returns the number of frames."""
        frames = [item for item in run if isinstance(item, Frame)]
        if frames:
            for frame, pixels in zip(frames, steady(torch.stack([f.pixels for f in frames]))):
                frame.pixels = pixels
        for item in run:
            self._put(self.encoded, item)
        return len(frames)

    def _estimate(self, run: list[Any], frames: int, seconds: float, total: int | None) -> None:
        if self.on_estimate and total:
            h, w = next(item for item in run if isinstance(item, Frame)).pixels.shape[-2:]
            speed = frames / max(seconds, 1e-6)
            self.on_estimate(Estimate(total, speed, h, w, self.stylizer.stroke_scale_for(h, w)))

    def _report(self, done: int, total: int | None) -> None:
        if self.on_frame:
            self.on_frame(done, max(total, done) if total else None)


def stylize_animation(stylizer: "Stylizer", src: Path, dst: Path, config: VideoConfig,
                      on_frame: OnFrame | None = None, quality: int = 95) -> int:
    """Stylize every frame of an animated image into ``dst``; returns the number of frames."""
    frames, info = read_animation(src)
    animation_format(dst)  # refuse a target it cannot be written to before the work
    split = [split_alpha(frame, stylizer.config.max_size) for frame in frames]
    pixels = [TF.pil_to_tensor(rgb) for rgb, _ in split]
    steady = FrameStylizer(stylizer, config)
    if steady.needs_samples:
        step = max(1, len(pixels) // config.stats_frames)
        steady.share(pixels[::step][:config.stats_frames])
    out: list[Image.Image] = []
    for run in runs(range(len(pixels)), lambda i: True, lambda i: tuple(pixels[i].shape), config.batch_size):
        for i, styled in zip(run, steady(torch.stack([pixels[i] for i in run]))):
            out.append(join_alpha(styled.float().div(255), split[i][1]))
        if on_frame:
            on_frame(len(out), len(pixels))
    save_animation(out, info, dst, quality)
    return len(out)


def stylize_file(stylizer: "Stylizer", src: Path, dst: Path, config: VideoConfig, on_frame: OnFrame | None = None,
                 quality: int = 95, on_estimate: OnEstimate | None = None) -> int:
    """Stylize a video or an animated image ``src`` into ``dst``; returns the frames written.
    ``on_estimate`` (videos) is called once, after the first batch, when the frame count is known."""
    if not is_video_path(src) and is_animated(src):
        return stylize_animation(stylizer, src, dst, config, on_frame, quality)
    if not is_video_path(dst):
        raise VideoError(f"{dst}: a video is written as one of {', '.join(sorted(FORMATS))}")
    return VideoJob(stylizer, config, on_frame, on_estimate).run(src, dst)
