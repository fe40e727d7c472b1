"""Training data: seeded crops of the content photos, their sampler, and the style crops the
discriminator sees. Randomness is tied to each sample's position in the data stream, so a
resumed run sees exactly the data it would have seen without the interruption.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Sequence

import torch

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


class ContentDataset(torch.utils.data.Dataset):
    """Random resized square crops of content photos, decoded in DataLoader workers.

    Indexed by ``(index, position)`` pairs (see :class:`InfiniteSampler`), each crop is drawn
    from a generator seeded by (seed, position), so crops do not depend on which worker
    decodes them or on how the run was interrupted. A plain int index uses torch's global RNG.

    An unreadable file is skipped (the next index is tried) and reported back with the batch,
    so training never stops for one bad photo but the user learns how many were skipped.
    """

    def __init__(self, paths: Sequence[Path], size: int, seed: int = 0) -> None:
        if not paths:
            raise DataError("no content images to train on")
        self.paths = list(paths)
        self.size = size
        self.seed = seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, list[int]]:
        from torchvision.transforms.v2 import functional as TF

        index, position = item if isinstance(item, tuple) else (item, None)
        generator = None if position is None else torch.Generator().manual_seed(sample_seed(self.seed, position))
        failed: list[int] = []
        for offset in range(len(self.paths)):
            i = (index + offset) % len(self.paths)
            try:
                image = load_rgb(self.paths[i])
            except ImageError:
                failed.append(i)
                continue
            tensor = pil_to_tensor(image)
            if min(tensor.shape[-2:]) < self.size:
                # Small photos are upscaled so every crop has the training size.
                scale = self.size / min(tensor.shape[-2:])
                new = [max(self.size, round(s * scale)) for s in tensor.shape[-2:]]
                tensor = torch.nn.functional.interpolate(tensor[None], size=new, mode="bilinear",
                                                         align_corners=False, antialias=False)[0]
            top, left, h, w = resized_crop_params(*tensor.shape[-2:], generator or torch.default_generator)
            return TF.resized_crop(tensor, top, left, h, w, [self.size, self.size], antialias=True), failed
        raise DataError(f"none of the {len(self.paths)} content images could be read")


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
