"""Stylize many files fast: decoding and encoding threads overlapped with the network.

    feeder -> [jobs] -> decoders -> [decoded] -> main thread: batches of equal size -> network
                                                  -> [encode] -> encoders -> atomic write

Every queue is bounded, so memory stays flat however many files there are: at most a few
batches of pixels are alive at once. Pillow releases the GIL while decoding and encoding and
torch does while computing, so threads overlap well without the cost of processes. One failing
file is recorded with its reason and the rest still run; an unexpected exception (a bug) stops
the run and is re-raised in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from styler.config import FolderConfig
from styler.errors import ImageError, StylerError
from styler.inference.stylizer import Stylizer
from styler.io.files import remove_stale_temps
from styler.io.images import mark_output, open_image, save_image, split_alpha

OnImage = Callable[[Path, "str | None"], None]
_DONE = object()  # end-of-stream marker on a queue
_RGB_MODES = ("RGB", "RGBA", "RGBX", "P", "PA")  # modes whose ICC profile describes RGB data


@dataclass
class ApplySummary:
    done: list[Path] = field(default_factory=list)
    pairs: list[tuple[Path, Path]] = field(default_factory=list)  # (input, output) of each one done
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return len(self.done) / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Item:
    """One image on its way through the pipeline."""

    src: Path
    dst: Path
    pixels: torch.Tensor  # (3, H, W) uint8 (4x smaller than float in the queues): input, then output
    alpha: Image.Image | None
    exif: bytes | None
    icc: bytes | None


def set_max_pixels(limit: int | None) -> None:
    """Pillow's decompression-bomb limit is process-wide; None leaves Pillow's default."""
    if limit is not None:
        Image.MAX_IMAGE_PIXELS = limit


def decode(src: Path, dst: Path, max_size: int | None) -> _Item:
    """Read one image: pixels, alpha, EXIF (orientation already applied) and an RGB ICC profile."""
    try:
        image = open_image(src, max_size)
    except ImageError as exc:
        if isinstance(exc.__cause__, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            raise ImageError(f"{exc}; raise the limit with --max-pixels if you trust this file, or "
                             f"scale it down with --max-size") from exc
        raise
    exif = image.getexif()
    # A CMYK or greyscale profile would mislabel the RGB output, so only RGB profiles travel.
    icc = image.info.get("icc_profile") if image.mode in _RGB_MODES else None
    rgb, alpha = split_alpha(image, max_size)
    return _Item(src, dst, TF.pil_to_tensor(rgb), alpha, exif.tobytes() if len(exif) else None, icc)


def encode(item: _Item, quality: int) -> None:
    """Write one stylized image atomically; alpha is dropped only where the format has none."""
    out = TF.to_pil_image(item.pixels)
    if item.alpha is not None:
        out.putalpha(item.alpha)
    if out.mode == "RGBA" and item.dst.suffix.lower() in (".jpg", ".jpeg", ".bmp"):
        out = out.convert("RGB")
    save_image(out, item.dst, quality=quality, exif=mark_output(item.exif), icc_profile=item.icc)


class _Threads:
    """Worker threads that record the first unexpected exception instead of dying silently."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.crash: BaseException | None = None

    def start(self, target: Callable[..., None], *args: Any) -> None:
        def guarded() -> None:
            try:
                target(*args)
            except BaseException as exc:  # re-raised in the main thread by check()
                self.crash = self.crash or exc
        thread = threading.Thread(target=guarded, daemon=True)
        thread.start()
        self.threads.append(thread)

    def check(self) -> None:
        if self.crash is not None:
            raise self.crash

    def join(self) -> None:
        for thread in self.threads:
            thread.join()
        self.check()


class Pipeline:
    """One run over ``pairs``; see the module docstring for the stages."""

    def __init__(self, stylizer: Stylizer, config: FolderConfig, on_image: OnImage | None) -> None:
        self.stylizer, self.config, self.on_image = stylizer, config, on_image
        self.summary = ApplySummary()
        self.lock = threading.Lock()
        depth = 2 * config.batch_size + config.workers
        self.jobs: queue.Queue[Any] = queue.Queue(maxsize=2 * config.workers)
        self.decoded: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.encoded: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.threads = _Threads()

    def _put(self, target: queue.Queue[Any], item: Any) -> None:
        """A put that cannot hang the main thread when the consumers died of a bug."""
        while True:
            try:
                return target.put(item, timeout=0.5)
            except queue.Full:
                self.threads.check()

    def report(self, src: Path, dst: Path, error: str | None) -> None:
        with self.lock:
            if error is None:
                self.summary.done.append(dst)
                self.summary.pairs.append((src, dst))
            else:
                self.summary.failed.append((src, error))
            if self.on_image is not None:
                self.on_image(src, error)

    def _feed(self, pairs: Sequence[tuple[Path, Path]]) -> None:
        for pair in pairs:
            self.jobs.put(pair)
        for _ in range(self.config.workers):
            self.jobs.put(_DONE)

    def _decode_loop(self) -> None:
        while (job := self.jobs.get()) is not _DONE:
            src, dst = job
            try:
                self.decoded.put(decode(src, dst, self.stylizer.config.max_size))
            except StylerError as exc:
                self.report(src, dst, str(exc))
        self.decoded.put(_DONE)

    def _encode_loop(self) -> None:
        while (item := self.encoded.get()) is not _DONE:
            try:
                encode(item, self.config.quality)
                self.report(item.src, item.dst, None)
            except StylerError as exc:
                self.report(item.src, item.dst, str(exc))

    def _stylize(self, batch: list[_Item]) -> None:
        try:
            out = self.stylizer.stylize_tensor(torch.stack([item.pixels for item in batch]).float().div_(255))
        except torch.OutOfMemoryError as exc:
            if len(batch) > 1:  # retry one by one before giving up on any image
                for item in batch:
                    self._stylize([item])
                return
            self.report(batch[0].src, batch[0].dst, f"{batch[0].src}: out of memory ({str(exc).splitlines()[0]}); "
                        f"try --tile 512 or --max-size")
            return
        except StylerError as exc:
            for item in batch:
                self.report(item.src, item.dst, str(exc))
            return
        for item, pixels in zip(batch, out.cpu().clamp(0, 1).mul(255).round().to(torch.uint8)):
            item.pixels = pixels
            self._put(self.encoded, item)

    def _batches(self) -> Iterator[list[_Item]]:
        """Group decoded images by size. A group goes out when it is full; with many sizes in
        flight, the largest group goes out once 2 x batch_size images wait (bounded memory)."""
        pending: dict[tuple[int, ...], list[_Item]] = {}
        waiting, finished = 0, 0
        while finished < self.config.workers:
            try:
                item = self.decoded.get(timeout=0.5)
            except queue.Empty:
                self.threads.check()  # a crashed decoder would otherwise leave us waiting forever
                continue
            if item is _DONE:
                finished += 1
                continue
            key = tuple(item.pixels.shape)
            pending.setdefault(key, []).append(item)
            waiting += 1
            if len(pending[key]) < self.config.batch_size and waiting < 2 * self.config.batch_size:
                continue
            key = key if len(pending[key]) >= self.config.batch_size else max(pending, key=lambda k: len(pending[k]))
            batch = pending.pop(key)
            waiting -= len(batch)
            yield batch
        yield from pending.values()

    def run(self, pairs: Sequence[tuple[Path, Path]]) -> ApplySummary:
        start = time.perf_counter()
        self.threads.start(self._feed, pairs)
        for _ in range(self.config.workers):
            self.threads.start(self._decode_loop)
            self.threads.start(self._encode_loop)
        for batch in self._batches():
            self._stylize(batch)
        for _ in range(self.config.workers):
            self._put(self.encoded, _DONE)
        self.threads.join()
        self.summary.seconds = time.perf_counter() - start
        return self.summary


def apply_to_paths(stylizer: Stylizer, pairs: Sequence[tuple[Path, Path]], config: FolderConfig | None = None,
                   on_image: OnImage | None = None) -> ApplySummary:
    """Stylize every (input, output) pair; one failing image is recorded and the rest still run."""
    config = config or FolderConfig()
    set_max_pixels(config.max_pixels)
    remove_stale_temps(dst for _, dst in pairs)  # what a killed run left half-written
    return Pipeline(stylizer, config, on_image).run(pairs)
