"""Training data: seeded crops of the content photos, their sampler, and the style crops the
discriminator sees. Randomness is tied to each sample's position in the data stream, so a
resumed run sees exactly the data it would have seen without the interruption.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Iterator, Sequence

import torch
from PIL import Image

from styler.errors import DataError, ImageError
from styler.io.images import find_images, load_rgb, pil_to_tensor, resized_crop_params


def content_images(content_dir: Path) -> list[Path]:
    """The photos to train on: every image below ``content_dir``, or a one-line error."""
    paths = find_images(Path(content_dir))
    if not paths:
        raise DataError(f"{content_dir}: no images found (looked for jpg, jpeg, png, webp, bmp, tif, gif "
                        f"in all subfolders)")
    return paths


def sample_seed(seed: int, position: int) -> int:
    """A seed for the ``position``-th sample of a run: randomness tied to the data stream, not
    to global or per-worker RNG state, so a resumed run draws the same crops."""
    return (seed * 1_000_003 + position * 7_919 + 12_345) % (2**63 - 1)


# Decoded photos kept in memory per DataLoader process, reduced to what crops need (a 12 MP photo
# becomes about 256 KB for 128 px crops): later epochs skip decoding. Past the budget, the
# photos not yet cached are decoded again each time they come up.
PHOTO_CACHE_BYTES = 256 * 2**20
# The smallest crop resized_crop_params draws (35% of the area, aspect 0.8) spans 0.53 of the
# photo's shorter side, so a copy whose shorter side is twice the crop size still gives every
# crop at least ``size`` pixels a side: crops are always reduced, never enlarged.
_REDUCED_SHORT_SIDE = 2


def reduced_photo(path: Path, short_side: int) -> Image.Image:
    """The photo at ``path``, upright, in 8-bit RGB, with its shorter side at most ``short_side``.

    Only what that needs is decoded: a JPEG at the smallest of 1/2, 1/4 or 1/8 scale that is
    still larger (a 12 MP phone photo decodes at 1/8 for 128 px crops), then an 8-bit resize.
    """
    def plan(image: Image.Image) -> None:
        scale = short_side / min(image.size)
        if scale < 1:
            image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))

    image = load_rgb(path, before_decode=plan)
    scale = short_side / min(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return image


def first_read_seconds(paths: Sequence[Path], size: int) -> float:
    """Mean seconds to read one of ``paths`` for ``size`` px crops the first time, as the loader
    does before its cache holds the photo (0 if none can be read: the loader skips those too)."""
    seconds: list[float] = []
    for path in paths:
        start = time.perf_counter()
        try:
            reduced_photo(path, _REDUCED_SHORT_SIDE * size)
        except ImageError:
            continue
        seconds.append(time.perf_counter() - start)
    return sum(seconds) / len(seconds) if seconds else 0.0


class ContentDataset(torch.utils.data.Dataset):
    """Random resized square crops of content photos, decoded in DataLoader workers.

    Indexed by ``(index, position)`` pairs (see :class:`InfiniteSampler`), each crop is drawn
    from a generator seeded by (seed, position), so crops do not depend on which worker
    decodes them or on how the run was interrupted. A plain int index uses torch's global RNG.
    Crops are cut from :func:`reduced_photo` copies, kept up to ``cache_bytes``; a copy is the
    same whether it was cached or decoded again, so crops do not depend on the cache either.

    An unreadable file is skipped (the next index is tried) and reported back with the batch,
    so training never stops for one bad photo but the user learns how many were skipped.
    """

    def __init__(self, paths: Sequence[Path], size: int, seed: int = 0, cache_bytes: int = PHOTO_CACHE_BYTES) -> None:
        if not paths:
            raise DataError("no content images to train on")
        self.paths = list(paths)
        self.size = size
        self.seed = seed
        self.cache_bytes = cache_bytes
        self._cache: dict[int, Image.Image] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.paths)

    def _photo(self, i: int) -> Image.Image:
        photo = self._cache.get(i)
        if photo is None:
            photo = reduced_photo(self.paths[i], _REDUCED_SHORT_SIDE * self.size)
            nbytes = photo.width * photo.height * 3
            if self._cached_bytes + nbytes <= self.cache_bytes:
                self._cache[i] = photo
                self._cached_bytes += nbytes
        return photo

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, list[int]]:
        index, position = item if isinstance(item, tuple) else (item, None)
        generator = torch.default_generator if position is None else \
            torch.Generator().manual_seed(sample_seed(self.seed, position))
        failed: list[int] = []
        for offset in range(len(self.paths)):
            i = (index + offset) % len(self.paths)
            try:
                return self._crop(i, generator), failed
            except ImageError:
                failed.append(i)
        raise DataError(f"none of the {len(self.paths)} content images could be read")

    def _crop(self, i: int, generator: torch.Generator) -> torch.Tensor:
        photo = self._photo(i)
        top, left, h, w = resized_crop_params(photo.height, photo.width, generator)
        # Cut and resized in 8 bits; a photo smaller than the crop size is enlarged here.
        crop = photo.resize((self.size, self.size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
        return pil_to_tensor(crop)


def collate_content(batch: list[tuple[torch.Tensor, list[int]]]) -> tuple[torch.Tensor, list[int]]:
    images = torch.stack([item[0] for item in batch])
    failed = sorted({i for item in batch for i in item[1]})
    return images, failed


class InfiniteSampler(torch.utils.data.Sampler):
    """Endless seeded permutations of ``range(n)``, starting after ``start`` samples.

    Deterministic from (seed, start), so a resumed run sees exactly the data order it would
    have seen without the interruption. ``start`` counts samples of the global stream; with
    ``world_size`` > 1 rank ``r`` takes the positions ``p`` with ``p % world_size == r``, so
    the ranks see disjoint shards of the same order. With ``positions`` it yields
    ``(index, position)`` pairs for :class:`ContentDataset`'s per-sample randomness.
    """

    def __init__(self, n: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1,
                 positions: bool = False) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.n, self.seed, self.start = n, seed, start
        self.rank, self.world_size, self.positions = rank, world_size, positions

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        epoch, offset = divmod(self.start, self.n)
        position = self.start
        while True:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))
            for index in order[offset:].tolist():
                if position % self.world_size == self.rank:
                    yield (index, position) if self.positions else index
                position += 1
            epoch, offset = epoch + 1, 0


class StyleCrops:
    """Random crops of the style image: the 'real' samples the discriminator sees.

    The crops of step ``s`` on rank ``r`` come from a generator seeded by (seed, r, s), so
    they need no RNG state in the checkpoint and a resumed run draws the same ones.
    """

    def __init__(self, style: torch.Tensor, size: int, seed: int, rank: int = 0) -> None:
        short = min(style.shape[-2:])
        if short < size:
            scale = size / short
            new = [max(size, math.ceil(s * scale)) for s in style.shape[-2:]]
            style = torch.nn.functional.interpolate(style, size=new, mode="bilinear", align_corners=False)
        self.style, self.size, self.seed, self.rank = style, size, seed, rank

    def sample(self, n: int, step: int) -> torch.Tensor:
        rng = torch.Generator().manual_seed(sample_seed(self.seed + 7_777 * (self.rank + 1), step))
        h, w = self.style.shape[-2:]
        ys = torch.randint(0, h - self.size + 1, (n,), generator=rng).tolist()
        xs = torch.randint(0, w - self.size + 1, (n,), generator=rng).tolist()
        return torch.cat([self.style[..., y:y + self.size, x:x + self.size] for y, x in zip(ys, xs)])
