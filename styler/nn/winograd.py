"""Winograd convolution for the frozen loss network's wide 3x3 layers on the CPU.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016): F(4x4, 3x3)
computes each 4x4 block of a 3x3 convolution's output from a 6x6 block of its input with 36
multiplications per channel pair where the direct convolution needs 144. Input blocks and
filters are moved into the transform domain (``B^T d B``, ``G g G^T``), multiplied there as 36
matrix products over the channels, and moved back (``A^T m A``). It is the same convolution, not
an approximation: the outputs differ from the direct one only by fp32 rounding (a relative 1e-5
on VGG's activations; ``tests/test_winograd.py``).

Departures from the paper: the transforms are dense 36x36 (and 16x36) matrix products rather
than hand-scheduled additions, so that they run as a few BLAS calls from PyTorch; the 36 products
over the channels run as one grouped 1x1 convolution in oneDNN (:class:`WinogradFilters`); the
blocks are processed in chunks that stay in the cache. Only the gradient with respect to the
input is computed: the loss network is frozen. The backward pass is itself a Winograd
convolution (the flipped, transposed filters).

Where it pays: layers with many channels at small spatial sizes, whose matrix products dominate
the transforms' memory traffic. On the loss network at 128 px crops that is VGG's 256- and
512-channel layers, 1.4 to 2.2 times as fast as oneDNN's direct convolution there; the 64- and
128-channel layers at high resolution are slower this way, so they stay direct
(docs/performance.md, "Winograd"). Without oneDNN the products are MKL's, and on CPUs whose
direct convolution runs twice as fast as those (AMD Zen 5: :func:`winograd_pays`) every layer
stays direct.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from styler.device import cpu_family

TILE = 4  # output block edge m of F(m x m, 3 x 3)
SPAN = TILE + 2  # input block edge: m + r - 1
# A chunk's transformed blocks (the larger of input and output) in bytes: small enough to stay in
# the cache between the transform and the matrix products. A batch of four 128 px crops is one
# chunk at VGG's 512-channel layers and one chunk per image at its 256-channel layers.
CHUNK_BYTES = 8 << 20
# Layers with at least this many output channels take the Winograd path (measured: see module doc).
MIN_OUT_CHANNELS = 256

_B_T = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
        (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_A_T = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


@lru_cache(maxsize=None)
def _transforms(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B^T kron B^T, A^T kron A^T): the 2-D input and output transforms on flattened blocks."""
    b_t = torch.tensor(_B_T, dtype=torch.float64)
    a_t = torch.tensor(_A_T, dtype=torch.float64)
    return (torch.kron(b_t, b_t).float().to(device), torch.kron(a_t, a_t).float().to(device))


def _transform(weight: torch.Tensor, layout: str) -> torch.Tensor:
    """``G g G^T`` for each filter of ``[K, C, 3, 3]``, in one fp32 product straight into the
    layout the products read (no permuted copy of VGG's largest layers, 38 MB each): ``"abck"``
    gives ``[36, C, K]`` (torch.bmm's), ``"abkc"`` ``[36 * K, C, 1, 1]`` (the grouped convolution's)."""
    g = torch.tensor(_G, dtype=torch.float32, device=weight.device)
    k, c = weight.shape[:2]
    shape = (SPAN * SPAN, c, k) if layout == "abck" else (SPAN * SPAN * k, c, 1, 1)
    return torch.einsum(f"ai,kcij,bj->{layout}", g, weight.detach().float(), g).reshape(shape).contiguous()


def _onednn_products(machine: str | None = None) -> bool:
    """Whether the products run in oneDNN: on x86 CPUs, where they were measured, with a PyTorch
    built with oneDNN. Elsewhere (ARM's oneDNN goes through other kernels) they stay torch.bmm."""
    machine = (machine if machine is not None else platform.machine()).lower()
    return (machine in ("x86_64", "amd64") and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


# Whether the 36 products run in oneDNN (see WinogradFilters); decided once, at import.
ONEDNN_PRODUCTS = _onednn_products()


class WinogradFilters:
    """A 3x3 convolution's filters in the transform domain, and the 36 matrix products with them.

    The products (for each of the 36 transform-domain positions, blocks x C times C x K) run as one
    grouped 1x1 convolution in oneDNN, 36 groups, with filters packed into oneDNN's layout once per
    block count. That reaches oneDNN's AVX-512 convolution rate, where ``torch.bmm`` calls MKL,
    which runs its AVX2 code on AMD CPUs: 390-470 against 170-200 GFLOP/s for VGG's wide layers
    on a Zen 5 core pair (docs/performance.md). A packing is chosen for one input size and is
    slow for some others, hence one per block count, the latest :data:`PACKS` kept. Without oneDNN,
    or off x86 (:data:`ONEDNN_PRODUCTS`), the products are ``torch.bmm``.
    """

    PACKS = 2

    def __init__(self, weight: torch.Tensor) -> None:
        self.out_channels, self.in_channels = weight.shape[0], weight.shape[1]
        self._weight = weight.detach()
        # Only torch.bmm needs the transformed filters as they are; oneDNN's packings are made
        # from the weights when a block count first needs one.
        self._u = None if ONEDNN_PRODUCTS else _transform(self._weight, "abck")
        self._packed: dict[int, torch.Tensor] = {}

    def __getstate__(self) -> dict[str, object]:
        # oneDNN's packed tensors cannot be copied or pickled; they are rebuilt on first use.
        return {**self.__dict__, "_packed": {}}

    def _pack(self, blocks: int) -> torch.Tensor:
        packed = self._packed.pop(blocks, None)  # re-inserted below: the dict is in use order
        if packed is None:
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                _transform(self._weight, "abkc"), [0, 0], [1, 1], [1, 1], SPAN * SPAN,
                [1, SPAN * SPAN * self.in_channels, blocks, 1])
            if len(self._packed) >= self.PACKS:
                del self._packed[next(iter(self._packed))]
        self._packed[blocks] = packed
        return packed

    def multiply(self, v: torch.Tensor) -> torch.Tensor:
        """``[P, 36, C]`` transformed input blocks -> ``[P, 36, K]`` products (as a view)."""
        p, c, k = v.shape[0], self.in_channels, self.out_channels
        if not ONEDNN_PRODUCTS:
            if self._u is None:  # built where oneDNN was used, then copied to where it is not
                self._u = _transform(self._weight, "abck")
            return torch.bmm(v.transpose(0, 1), self._u).transpose(0, 1)
        # [P, 36 * C] is the memory of a channels_last [1, 36 * C, P, 1] image: no copy.
        image = v.reshape(p, SPAN * SPAN * c).t().view(1, SPAN * SPAN * c, p, 1)
        m = torch.ops.mkldnn._convolution_pointwise(
            image, self._pack(p), None, [0, 0], [1, 1], [1, 1], SPAN * SPAN, "none", [], "")
        return m.permute(0, 2, 3, 1).view(p, SPAN * SPAN, k)


def transform_filters(weight: torch.Tensor) -> WinogradFilters:
    """``weight`` ``[K, C, 3, 3]`` ready for :func:`winograd_conv3x3`."""
    return WinogradFilters(weight)


def _chunks(n: int, rows: int, row_bytes: int) -> list[tuple[slice, slice]]:
    """(images, block rows) pieces of at most :data:`CHUNK_BYTES` of transformed blocks."""
    if n * rows * row_bytes <= CHUNK_BYTES:
        return [(slice(0, n), slice(0, rows))]
    most = max(1, CHUNK_BYTES // row_bytes)
    # Bands of equal height where the rows allow it: each block count needs its own oneDNN packing.
    step = -(-rows // -(-rows // most))
    return [(slice(i, i + 1), slice(r, min(rows, r + step))) for i in range(n) for r in range(0, rows, step)]


def winograd_conv3x3(x: torch.Tensor, filters: WinogradFilters, bias: torch.Tensor | None = None) -> torch.Tensor:
    """3x3 convolution, stride 1, zero padding 1, of ``x`` ``[N, C, H, W]`` with filters from
    :func:`transform_filters`; the result is channels_last. Any H and W."""
    n, c, h, w = x.shape
    k = filters.out_channels
    rows, cols = -(-h // TILE), -(-w // TILE)
    # Extra zeros on the bottom and right make whole blocks; they change no output kept.
    xp = F.pad(x, (1, 1 + cols * TILE - w, 1, 1 + rows * TILE - h))
    blocks = xp.unfold(2, SPAN, TILE).unfold(3, SPAN, TILE)  # [N, C, rows, cols, 6, 6], a view
    b_kron, a_kron = _transforms(x.device)
    # The result is allocated in NCHW shape, channels_last, and filled through an NHWC view of it:
    # it is then no view itself, so an in-place ReLU may follow it inside autograd.
    result = torch.empty(n, k, rows * TILE, cols * TILE, dtype=x.dtype, device=x.device,
                         memory_format=torch.channels_last)
    out = result.permute(0, 2, 3, 1)
    for images, band in _chunks(n, rows, SPAN * SPAN * cols * max(c, k) * x.element_size()):
        d = blocks[images, :, band]
        nb, nr = d.shape[0], d.shape[2]
        p = nb * nr * cols
        # Blocks first, then transform positions, then channels: each block's 36 x C slice is
        # transformed by one small product, and the 36 products read it in place.
        d = d.permute(0, 2, 3, 4, 5, 1).reshape(p, SPAN * SPAN, c)
        y = torch.matmul(a_kron, filters.multiply(torch.matmul(b_kron, d)))  # [P, 16, K]
        target = out[images, band.start * TILE:band.stop * TILE].view(nb, nr, TILE, cols, TILE, k)
        target.copy_(y.view(nb, nr, cols, TILE, TILE, k).permute(0, 1, 3, 2, 4, 5))
    if bias is not None:
        out.add_(bias)
    if (rows * TILE, cols * TILE) == (h, w):
        return result
    return result[:, :, :h, :w].contiguous(memory_format=torch.channels_last)


class _FrozenWinograd(torch.autograd.Function):
    """Winograd forward and input gradient; no gradient for the (frozen) filters. ``back`` gives
    the backward pass's filters when it first needs them: forward-only use never builds them."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, filters: WinogradFilters,  # type: ignore[override]
                back: Callable[[], WinogradFilters], bias: torch.Tensor | None) -> torch.Tensor:
        ctx.back = back
        return winograd_conv3x3(x, filters, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return winograd_conv3x3(grad, ctx.back()), None, None, None


class WinogradConv2d(nn.Conv2d):
    """A frozen 3x3, stride 1, padding 1 :class:`~torch.nn.Conv2d` computed by F(4x4, 3x3) in fp32
    on the CPU. Anywhere else (CUDA, bf16 autocast, other dtypes, filters that train, inside
    torch.compile) it is the plain convolution. Same parameters and state-dict keys as the
    convolution it replaces."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True,
                 device: torch.device | str | None = None) -> None:
        super().__init__(in_channels, out_channels, 3, padding=1, bias=bias, device=device)
        self._cache: tuple[tuple[int, int, torch.device], WinogradFilters] | None = None
        self._back_cache: tuple[tuple[int, int, torch.device], WinogradFilters] | None = None

    @classmethod
    def replacing(cls, conv: nn.Conv2d) -> "WinogradConv2d":
        """A Winograd convolution sharing ``conv``'s parameters."""
        # Built on "meta": no initialisation, so no draws from the global generator.
        new = cls(conv.in_channels, conv.out_channels, bias=conv.bias is not None, device="meta")
        new.weight, new.bias = conv.weight, conv.bias
        return new

    def _key(self) -> tuple[int, int, torch.device]:
        # Changes when the weights change in place (loading, calibration) or move.
        return (self.weight._version, self.weight.data_ptr(), self.weight.device)

    def _filters(self) -> WinogradFilters:
        if self._cache is None or self._cache[0] != self._key():
            self._cache = (self._key(), transform_filters(self.weight))
            self._back_cache = None
        return self._cache[1]

    def _back_filters(self) -> WinogradFilters:
        """The input gradient's filters (flipped, in and out swapped), transformed on first use."""
        if self._back_cache is None or self._back_cache[0] != self._key():
            back = self.weight.detach().flip(2, 3).transpose(0, 1)
            self._back_cache = (self._key(), transform_filters(back))
        return self._back_cache[1]

    def _applies(self, x: torch.Tensor) -> bool:
        return (x.device.type == "cpu" and x.dtype == torch.float32 and self.weight.dtype == torch.float32
                and not self.weight.requires_grad and not torch.is_autocast_enabled("cpu")
                # torch.compile generates its own convolution kernels from the plain one.
                and not torch.compiler.is_compiling())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._applies(x):
            return super().forward(x)
        bias = None if self.bias is None else self.bias.detach()
        return _FrozenWinograd.apply(x, self._filters(), self._back_filters, bias)


# AMD's Zen 5 (family 26) and later execute AVX-512 at full width, so oneDNN's direct
# convolution runs at twice Zen 4's rate, while MKL runs its AVX2 code on AMD CPUs. With the
# products in MKL (no oneDNN) the direct convolution was as fast or faster at every wide layer
# there (docs/performance.md, "Zen 5: direct convolutions, not Winograd").
_FULL_WIDTH_AVX512_AMD_FAMILY = 26


def winograd_pays(cpu: tuple[str, int] | None = None, onednn: bool | None = None) -> bool:
    """Whether :func:`use_winograd` speeds up the loss network on this CPU (``cpu``: vendor and
    family, default :func:`styler.device.cpu_family`; ``onednn``: whether the products run in
    oneDNN, default :data:`ONEDNN_PRODUCTS`). With oneDNN products, everywhere: they run at the
    direct convolution's own rate, on a quarter of its multiplications. With MKL products, not on
    AMD CPUs with full-width AVX-512. A fixed rule rather than a timing, so that the same machine
    always computes the same run."""
    if ONEDNN_PRODUCTS if onednn is None else onednn:
        return True
    cpu = cpu if cpu is not None else cpu_family()
    return cpu is None or not (cpu[0] == "AuthenticAMD" and cpu[1] >= _FULL_WIDTH_AVX512_AMD_FAMILY)


def _eligible(module: nn.Module, min_out_channels: int) -> bool:
    return (type(module) is nn.Conv2d and module.kernel_size == (3, 3) and module.stride == (1, 1)
            and module.padding == (1, 1) and module.dilation == (1, 1) and module.groups == 1
            and module.padding_mode == "zeros" and module.out_channels >= min_out_channels)


def use_winograd(net: nn.Sequential, min_out_channels: int = MIN_OUT_CHANNELS) -> int:
    """Swap ``net``'s eligible convolutions for :class:`WinogradConv2d` in place; how many."""
    swapped = 0
    for i, module in enumerate(net):
        if _eligible(module, min_out_channels):
            net[i] = WinogradConv2d.replacing(module)
            swapped += 1
    return swapped


def use_direct(net: nn.Sequential) -> int:
    """Undo :func:`use_winograd`: plain convolutions sharing the same parameters; how many."""
    swapped = 0
    for i, module in enumerate(net):
        if isinstance(module, WinogradConv2d):
            conv = nn.Conv2d(module.in_channels, module.out_channels, 3, padding=1,
                             bias=module.bias is not None, device="meta")
            conv.weight, conv.bias = module.weight, module.bias
            net[i] = conv
            swapped += 1
    return swapped
