"""Stylize many files fast: decoding and encoding threads overlapped with the network.

    feeder -> [jobs] -> decoders -> [decoded] -> main thread: batches of equal size -> network
                                                  -> [encode] -> encoders -> atomic write

Every queue is bounded and batches are bounded in pixels, so memory stays flat however many files
there are and however large they are: four 1 MP photos go through the network together, a 10 MP
one alone. Pillow releases the GIL while decoding and encoding and torch does while computing, so
threads overlap well without the cost of processes. One failing file is recorded with its reason
and the rest still run; an unexpected exception (a bug) or Ctrl-C stops every thread, which ends
before the exception reaches the caller.
"""

from __future__ import annotations

import contextlib
import math
import queue
import re
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
from styler.io.images import mark_output, max_image_pixels, open_image, save_image, split_alpha

OnImage = Callable[[Path, "str | None"], None]
OnWork = Callable[[float], None]
_DONE = object()  # end-of-stream marker on a queue
_RGB_MODES = ("RGB", "RGBA", "RGBX", "P", "PA")  # modes whose ICC profile describes RGB data
_POLL = 0.2  # seconds a blocked thread waits before it looks whether the run is stopping
# Shares of one image's work, for progress: the network is most of it.
DECODE, NETWORK, ENCODE = 0.1, 0.8, 0.1


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


def decode(src: Path, dst: Path, max_size: int | None) -> _Item:
    """Read one image: pixels, alpha, EXIF (orientation already applied) and an RGB ICC profile."""
    try:
        image = open_image(src, max_size)
    except ImageError as exc:
        if isinstance(exc.__cause__, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            raise ImageError(f"{exc}; raise the limit (max_pixels={_pixels(exc.__cause__)}) if you trust "
                             f"this file, or scale it down (max_size={_fitting_size()})") from exc
        raise
    exif = image.getexif()
    # A CMYK or greyscale profile would mislabel the RGB output, so only RGB profiles travel.
    icc = image.info.get("icc_profile") if image.mode in _RGB_MODES else None
    rgb, alpha = split_alpha(image, max_size)
    return _Item(src, dst, TF.pil_to_tensor(rgb), alpha, exif.tobytes() if len(exif) else None, icc)


def _pixels(exc: BaseException | None) -> str:
    """The image's pixel count from Pillow's decompression-bomb message ("Image size (N pixels)")."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return found.group(1) if found else "N"


def _fitting_size() -> int:
    """A ``max_size`` whose square fits Pillow's current limit (at most 4096)."""
    limit = Image.MAX_IMAGE_PIXELS
    return min(4096, math.isqrt(limit)) if limit else 4096


def run_settings(style_settings: str, config: FolderConfig) -> str:
    """The settings recorded in every output of a run (and compared by reruns): the style's
    (:meth:`Stylizer.settings`) and the run's."""
    return f"{style_settings}; quality {config.quality}"


def encode(item: _Item, quality: int, settings: str = "") -> None:
    """Write one stylized image atomically; alpha is dropped only where the format has none."""
    out = TF.to_pil_image(item.pixels)
    if item.alpha is not None:
        out.putalpha(item.alpha)
    if out.mode == "RGBA" and item.dst.suffix.lower() in (".jpg", ".jpeg", ".bmp"):
        out = out.convert("RGB")
    save_image(out, item.dst, quality=quality, exif=mark_output(item.exif, settings), icc_profile=item.icc)


class _Threads:
    """Worker threads that record the first unexpected exception instead of dying silently, and
    that all end once :meth:`close` sets ``stop``: every wait on a queue looks at it."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.crash: BaseException | None = None
        self.stop = threading.Event()

    def start(self, target: Callable[..., None], *args: Any) -> None:
        def guarded() -> None:
            try:
                target(*args)
            except BaseException as exc:  # re-raised in the main thread by check()
                self.crash = self.crash or exc
        thread = threading.Thread(target=guarded, daemon=True, name=f"styler-{target.__name__.strip('_')}")
        thread.start()
        self.threads.append(thread)

    def check(self) -> None:
        if self.crash is not None:
            raise self.crash

    def put(self, target: queue.Queue[Any], item: Any, check: bool = False) -> bool:
        """Put ``item``, waiting for room; False once the run stops. ``check``: raise a worker's
        crash meanwhile (the main thread, whose consumers may have died)."""
        while not self.stop.is_set():
            with contextlib.suppress(queue.Full):
                target.put(item, timeout=_POLL)
                return True
            if check:
                self.check()
        return False

    def get(self, source: queue.Queue[Any], check: bool = False) -> Any:
        """The next item, or ``_DONE`` once the run stops (``check`` as for :meth:`put`)."""
        while not self.stop.is_set():
            with contextlib.suppress(queue.Empty):
                return source.get(timeout=_POLL)
            if check:
                self.check()
        return _DONE

    def join(self) -> None:
        for thread in self.threads:
            thread.join()
        self.check()

    def close(self) -> None:
        """Stop every thread and wait for it: a file being written is finished first (writes are
        atomic), nothing new is started."""
        self.stop.set()
        for thread in self.threads:
            thread.join()


def _size(item: _Item) -> int:
    return item.pixels.shape[-2] * item.pixels.shape[-1]


def images_per_batch(pixels: int, budget: int) -> int:
    """How many images of ``pixels`` pixels one batch holds within ``budget`` pixels (at least
    one: a larger image goes alone)."""
    return max(1, budget // pixels)


def _full(group: list[_Item], budget: int) -> bool:
    """A group of one size holds as many images as fit the pixel budget."""
    return len(group) >= images_per_batch(_size(group[0]), budget)


def out_of_memory(exc: BaseException) -> bool:
    """CUDA's own error, or the CPU allocator's RuntimeError."""
    return isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc)


class Pipeline:
    """One run over ``pairs``; see the module docstring for the stages."""

    def __init__(self, stylizer: Stylizer, config: FolderConfig, on_image: OnImage | None,
                 on_work: OnWork | None = None) -> None:
        self.stylizer, self.config, self.on_image, self.on_work = stylizer, config, on_image, on_work
        self.settings = run_settings(stylizer.settings(), config)
        self.summary = ApplySummary()
        self.lock = threading.Lock()
        self.jobs: queue.Queue[Any] = queue.Queue(maxsize=2 * config.workers)
        self.decoded: queue.Queue[Any] = queue.Queue(maxsize=2 * config.workers + 2)
        self.encoded: queue.Queue[Any] = queue.Queue(maxsize=2 * config.workers + 2)
        self.threads = _Threads()

    def _advance(self, share: float) -> None:
        if self.on_work is not None:
            with self.lock:
                self.on_work(share)

    def report(self, src: Path, dst: Path, error: str | None, share: float = ENCODE) -> None:
        """One image is finished (written, or failed with ``error``); ``share`` of its work was left."""
        with self.lock:
            if error is None:
                self.summary.done.append(dst)
                self.summary.pairs.append((src, dst))
            else:
                self.summary.failed.append((src, error))
            if self.on_image is not None:
                self.on_image(src, error)
        self._advance(share)

    def _feed(self, pairs: Sequence[tuple[Path, Path]]) -> None:
        for job in [*pairs, *[_DONE] * self.config.workers]:
            if not self.threads.put(self.jobs, job):
                return

    def _decode_loop(self) -> None:
        while (job := self.threads.get(self.jobs)) is not _DONE:
            src, dst = job
            try:
                item = decode(src, dst, self.stylizer.config.max_size)
            except StylerError as exc:
                self.report(src, dst, str(exc), share=1.0)
                continue
            self._advance(DECODE)
            if not self.threads.put(self.decoded, item):
                return
        self.threads.put(self.decoded, _DONE)

    def _encode_loop(self) -> None:
        while (item := self.threads.get(self.encoded)) is not _DONE:
            try:
                encode(item, self.config.quality, self.settings)
                self.report(item.src, item.dst, None)
            except StylerError as exc:
                self.report(item.src, item.dst, str(exc))

    def _stylize(self, batch: list[_Item]) -> None:
        try:
            out = self.stylizer.stylize_tensor(torch.stack([item.pixels for item in batch]).float().div_(255))
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not out_of_memory(exc):
                raise
            if len(batch) > 1:  # retry one by one before giving up on any image
                for item in batch:
                    self._stylize([item])
                return
            self.report(batch[0].src, batch[0].dst, self._oom_reason(batch[0]), share=NETWORK + ENCODE)
            return
        except StylerError as exc:
            for item in batch:
                self.report(item.src, item.dst, str(exc), share=NETWORK + ENCODE)
            return
        for item, pixels in zip(batch, out.cpu().clamp(0, 1).mul(255).round().to(torch.uint8)):
            item.pixels = pixels
            self._advance(NETWORK)
            self.threads.put(self.encoded, item, check=True)

    def _oom_reason(self, item: _Item) -> str:
        height, width = item.pixels.shape[-2:]
        tile = self.stylizer.tile_size(height, width)
        smaller = f"smaller tiles (tile={max(64, (tile or 1024) // 2)})" if tile else "tiles (tile=1024)"
        return (f"{item.src}: out of memory on {self.stylizer.device.type} for {width}x{height} pixels; "
                f"stylize it in {smaller} or at a smaller size (max_size={max(64, max(height, width) // 2)})")

    def _batches(self) -> Iterator[list[_Item]]:
        """Group decoded images by size, up to ``batch_pixels`` pixels a group (at least one
        image). A group goes out when full; when the groups waiting hold twice the budget, the
        largest goes out (bounded memory with many sizes in flight)."""
        budget = self.config.batch_pixels
        pending: dict[tuple[int, ...], list[_Item]] = {}
        waiting, finished = 0, 0
        while finished < self.config.workers:
            item = self.threads.get(self.decoded, check=True)  # a crashed decoder raises here
            if item is _DONE:
                finished += 1
                continue
            key = tuple(item.pixels.shape)
            pending.setdefault(key, []).append(item)
            waiting += _size(item)
            if not _full(pending[key], budget):
                if waiting < 2 * budget:
                    continue
                key = max(pending, key=lambda k: len(pending[k]) * _size(pending[k][0]))
            batch = pending.pop(key)
            waiting -= len(batch) * _size(batch[0])
            yield batch
        yield from pending.values()

    def run(self, pairs: Sequence[tuple[Path, Path]]) -> ApplySummary:
        start = time.perf_counter()
        try:
            self.threads.start(self._feed, pairs)
            for _ in range(self.config.workers):
                self.threads.start(self._decode_loop)
                self.threads.start(self._encode_loop)
            for batch in self._batches():
                self._stylize(batch)
            for _ in range(self.config.workers):
                self.threads.put(self.encoded, _DONE, check=True)
            self.threads.join()
        finally:
            self.threads.close()  # after an exception (a bug, Ctrl-C) no thread stays blocked
        self.summary.seconds = time.perf_counter() - start
        return self.summary


def apply_to_paths(stylizer: Stylizer, pairs: Sequence[tuple[Path, Path]], config: FolderConfig | None = None,
                   on_image: OnImage | None = None, on_work: OnWork | None = None) -> ApplySummary:
    """Stylize every (input, output) pair; one failing image is recorded and the rest still run.
    ``on_image(src, error)`` is called as each image is finished, ``on_work(share)`` as each
    stage of one is (the shares of an image add up to 1: a progress bar that moves within it)."""
    config = config or FolderConfig()
    with max_image_pixels(config.max_pixels):
        remove_stale_temps(dst for _, dst in pairs)  # what a killed run left half-written
        return Pipeline(stylizer, config, on_image, on_work).run(pairs)
