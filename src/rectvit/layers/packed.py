"""Packed batches: images of different shapes in one forward pass, attention restricted to each image.

Two types travel through a model (NaViT-style sequence packing):

- ``PackedBatch`` (built by ``pack``): the input. ``N`` images ``(C, H_i, W_i)`` of any sizes, kept
  as one flat pixel buffer (so ``.to()``/``.pin_memory()`` move one tensor) plus their shapes.
- ``PackedTokens``: what the blocks see. The token sequences of the ``N`` images concatenated into
  one ``(T, D)`` tensor, ``T = sum(P + h_i * w_i)``: image ``i`` owns rows
  ``offsets[i]:offsets[i + 1]``, its ``P`` prefix tokens first, then its ``h_i x w_i`` patch tokens
  row-major. Linear layers and MLPs run once over all ``T`` rows; attention runs per image
  (``packed_attention``), so no token ever sees another image's tokens and nothing is padded.

A model turns a ``PackedBatch`` into ``PackedTokens`` (patch embedding per image shape, each
image's own position table), runs the blocks, and pools per image. ``pack`` sits in ``layers``
so that models can use the types without importing ``rectvit.variable``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F

from ..errors import InputSizeError, RectViTError
from .patch_embed import PatchEmbed

__all__ = [
    "ATTENTION_BACKENDS",
    "PackedBatch",
    "PackedLayout",
    "PackedTokens",
    "pack",
    "packed_attention",
    "patch_tokens",
    "resolve_backend",
]

Size = tuple[int, int]

#: ``"auto"``: ``"varlen"`` on CUDA for fp16/bf16 without attention dropout, ``"nested"`` on other
#: CUDA cases, ``"segments"`` elsewhere (fastest measured on CPU). ``"segments"``: one SDPA call per
#: image. ``"nested"``: one SDPA call on nested jagged tensors. ``"varlen"``:
#: ``torch.nn.attention.varlen.varlen_attn`` (Flash attention on cumulative sequence lengths; CUDA).
ATTENTION_BACKENDS = ("auto", "segments", "nested", "varlen")


# --------------------------------------------------------------------------------------------------
# The input: images of different shapes


@dataclass(frozen=True, eq=False)
class PackedBatch:
    """``N`` images ``(C, H_i, W_i)`` of any sizes, for one forward pass of a packing model.

    ``pixels`` is the flat concatenation of the images (input order); ``shapes`` their
    ``(C, H, W)``; ``attention`` the attention backend (see ``ATTENTION_BACKENDS``). Build it with
    ``rectvit.pack``; ``model(packed)`` returns ``(N, num_classes)``.
    """

    pixels: torch.Tensor
    shapes: tuple[tuple[int, int, int], ...]
    attention: str = "auto"

    def __len__(self) -> int:
        return len(self.shapes)

    @property
    def images(self) -> list[torch.Tensor]:
        """The ``N`` images as ``(C, H, W)`` views of ``pixels``."""
        sizes = [math.prod(s) for s in self.shapes]
        return [p.view(s) for p, s in zip(self.pixels.split(sizes), self.shapes)]

    @property
    def sizes(self) -> list[Size]:
        """``(H, W)`` of each image."""
        return [(h, w) for _, h, w in self.shapes]

    @property
    def dtype(self) -> torch.dtype:
        return self.pixels.dtype

    @property
    def device(self) -> torch.device:
        return self.pixels.device

    def to(self, *args, **kwargs) -> PackedBatch:
        """A copy with ``pixels.to(*args, **kwargs)`` (one transfer for all images)."""
        return PackedBatch(self.pixels.to(*args, **kwargs), self.shapes, self.attention)

    def pin_memory(self) -> PackedBatch:
        """Page-locked pixels (``DataLoader(pin_memory=True)`` calls this)."""
        return PackedBatch(self.pixels.pin_memory(), self.shapes, self.attention)

    def groups(self) -> list[list[int]]:
        """Indices of images of equal shape, groups in order of first appearance."""
        out: dict[tuple[int, int, int], list[int]] = {}
        for i, s in enumerate(self.shapes):
            out.setdefault(s, []).append(i)
        return list(out.values())

    def check_each_shape(self, check_input: Callable[[torch.Tensor], None]) -> None:
        """Run a model's ``check_input`` on one image of every shape, before any work; a ``RectViTError``
        names the first image of the shape it refuses."""
        images = self.images
        for group in self.groups():
            i = group[0]
            try:
                check_input(images[i].unsqueeze(0))
            except RectViTError as e:
                raise type(e)(f"packed image {i} (shape {tuple(images[i].shape)}): {e}") from None


def _check_backend(attention: str) -> str:
    if attention not in ATTENTION_BACKENDS:
        raise RectViTError(f"attention must be one of {ATTENTION_BACKENDS}, got {attention!r}.")
    return attention


def check_images(images: Sequence[object], in_chans: int | None = None, what: str = "image") -> None:
    """Raise a ``RectViTError`` naming the first bad entry of a list meant to be ``(C, H, W)`` images.

    Checked: a non-empty list of tensors, each 3-d with non-zero sizes, one channel count (``in_chans``
    when given, else the first image's), one dtype and one device (never ``meta``) for all.
    """
    if len(images) == 0:
        raise InputSizeError(f"expected at least one (C, H, W) {what}, got an empty list.")
    first = images[0]
    for i, x in enumerate(images):
        if not isinstance(x, torch.Tensor):
            raise InputSizeError(f"{what} {i}: expected a (C, H, W) tensor, got {type(x).__name__}.")
        if x.dim() != 3:
            raise InputSizeError(
                f"{what} {i}: expected a 3-d (C, H, W) tensor, got a {x.dim()}-d tensor of shape {tuple(x.shape)}; "
                "pass single images without a batch dimension (x[0] or x.squeeze(0))."
            )
        if x.is_meta:
            raise InputSizeError(f"{what} {i}: a tensor on the meta device holds no data; pass real images.")
        if 0 in x.shape:
            raise InputSizeError(f"{what} {i}: expected non-zero sizes, got shape {tuple(x.shape)}.")
        chans = in_chans if in_chans is not None else first.shape[0]
        if x.shape[0] != chans:
            raise InputSizeError(
                f"{what} {i}: expected {chans} channel(s), got {x.shape[0]} (shape {tuple(x.shape)}); "
                f"convert the input or build the model with in_chans={x.shape[0]}."
            )
        if x.dtype != first.dtype:
            raise InputSizeError(
                f"{what} {i}: dtype {x.dtype} differs from {what} 0's {first.dtype}; convert every {what} to one "
                "dtype first (e.g. x.float())."
            )
        if x.device != first.device:
            raise InputSizeError(
                f"{what} {i}: on device {x.device}, {what} 0 on {first.device}; move every {what} to one device "
                "first (x.to(device))."
            )


def pack(images: Sequence[torch.Tensor], attention: str = "auto") -> PackedBatch:
    """Pack ``(C, H_i, W_i)`` images of any sizes into one ``PackedBatch`` for ``model(packed)``.

    Every image is checked first (a ``RectViTError`` naming the index: empty list, not a 3-d
    tensor, other channel count, dtype or device than image 0). Sizes the model cannot take are
    reported by the model's forward, also before any work. ``attention`` picks the per-image
    attention backend (``ATTENTION_BACKENDS``). Usable as a ``DataLoader`` ``collate_fn`` for images.
    """
    _check_backend(attention)
    images = list(images)
    check_images(images)
    pixels = torch.cat([x.reshape(-1) for x in images])
    return PackedBatch(pixels, tuple(tuple(int(s) for s in x.shape) for x in images), attention)


def patch_tokens(embed: torch.nn.Module, images: Sequence[torch.Tensor], groups: list[list[int]]) -> list[torch.Tensor]:
    """Each image's patch tokens ``(g, h, w, D)`` per group of equal shapes (``groups``, as ``PackedBatch.groups``).

    A plain ``PatchEmbed`` cuts every image into patches (im2col) and projects all of them with one
    matmul (the convolution's weights, the same numbers up to float rounding); any other embedding
    (e.g. the hybrid's backbone) runs once per group. Sizes must have been checked.
    """
    if type(embed) is not PatchEmbed:
        out = []
        for group in groups:
            x = torch.stack([images[i] for i in group]) if len(group) > 1 else images[group[0]].unsqueeze(0)
            out.append(embed(x))
        return out
    proj = embed.proj
    cols, grids = [], []
    for group in groups:
        x = torch.stack([images[i] for i in group]) if len(group) > 1 else images[group[0]].unsqueeze(0)
        if embed.dynamic_img_pad:
            x = embed._pad(x)
        (kh, kw), (sh, sw) = proj.kernel_size, proj.stride
        grids.append((len(group), (x.shape[-2] - kh) // sh + 1, (x.shape[-1] - kw) // sw + 1))
        cols.append(F.unfold(x, proj.kernel_size, stride=proj.stride).transpose(1, 2).reshape(-1, x.shape[1] * kh * kw))
    tokens = F.linear(torch.cat(cols) if len(cols) > 1 else cols[0], proj.weight.flatten(1), proj.bias)
    return [t.view(g, h, w, -1) for t, (g, h, w) in zip(tokens.split([math.prod(s) for s in grids]), grids)]


# --------------------------------------------------------------------------------------------------
# The tokens: one (T, D) sequence, a layout that says which rows belong to which image


@dataclass(frozen=True, eq=False)
class PackedLayout:
    """Where each image's tokens sit in a packed ``(T, D)`` sequence.

    ``grids[i]`` is image ``i``'s ``(h, w)`` patch grid; each image has ``num_prefix`` prefix tokens
    (class, distillation, registers) before its ``h * w`` patch tokens.
    """

    grids: tuple[Size, ...]
    num_prefix: int
    attention: str = "auto"
    _cu: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # device tensors, per layout

    def __len__(self) -> int:
        return len(self.grids)

    @cached_property
    def lengths(self) -> tuple[int, ...]:
        """Tokens of each image: ``num_prefix + h * w``."""
        return tuple(self.num_prefix + h * w for h, w in self.grids)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """``N + 1`` row offsets: image ``i`` owns rows ``offsets[i]:offsets[i + 1]``."""
        out = [0]
        for n in self.lengths:
            out.append(out[-1] + n)
        return tuple(out)

    @property
    def total(self) -> int:
        return self.offsets[-1]

    def cu_seqlens(self, device: torch.device, num_queries: int | None = None) -> torch.Tensor:
        """``offsets`` as an int32 tensor on ``device`` (``i * num_queries`` with ``num_queries``)."""
        key = (str(device), num_queries)
        if key not in self._cu:
            values = self.offsets if num_queries is None else [i * num_queries for i in range(len(self) + 1)]
            self._cu[key] = torch.tensor(values, dtype=torch.int32, device=device)
        return self._cu[key]

    def first_rows(self, m: int, device: torch.device) -> torch.Tensor:
        """Row indices of the first ``m`` tokens of every image, ``(N * m,)``, image by image."""
        key = (str(device), "first", m)
        if key not in self._cu:
            starts = torch.tensor(self.offsets[:-1], dtype=torch.long, device=device)
            self._cu[key] = (starts[:, None] + torch.arange(m, device=device)).reshape(-1)
        return self._cu[key]

    def segment_ids(self, device: torch.device) -> torch.Tensor:
        """``(T,)`` index of the image each row belongs to."""
        key = (str(device), "ids")
        if key not in self._cu:
            lengths = torch.tensor(self.lengths, device=device)
            self._cu[key] = torch.repeat_interleave(torch.arange(len(self), device=device), lengths)
        return self._cu[key]


@dataclass(frozen=True, eq=False)
class PackedTokens:
    """``tokens`` ``(T, D)``: every image's token sequence, concatenated as ``layout`` describes.

    What ``forward_features(packed)`` returns; ``forward_head`` takes it back.
    """

    tokens: torch.Tensor
    layout: PackedLayout

    def __len__(self) -> int:
        return len(self.layout)

    def replace(self, tokens: torch.Tensor) -> PackedTokens:
        """The same layout with new ``(T, D')`` tokens."""
        return PackedTokens(tokens, self.layout)

    def unpack(self) -> list[torch.Tensor]:
        """Each image's ``(P + h_i * w_i, D)`` tokens, as the image alone would give them."""
        return list(self.tokens.split(list(self.layout.lengths)))

    def prefix_tokens(self) -> torch.Tensor:
        """``(N, P, D)``: the prefix tokens of every image."""
        p = self.layout.num_prefix
        rows = self.layout.first_rows(p, self.tokens.device)
        return self.tokens[rows].reshape(len(self), p, -1)

    def feature_maps(self) -> list[torch.Tensor]:
        """Each image's patch tokens as a map ``(h_i, w_i, D)`` on its own grid."""
        p = self.layout.num_prefix
        return [t[p:].reshape(h, w, -1) for t, (h, w) in zip(self.unpack(), self.layout.grids)]

    def pool(self, kind: str, include_prefix: bool = False) -> torch.Tensor:
        """``(N, D)``: per image ``"avg"``, ``"max"`` or ``"avgmax"`` over its patch tokens (and prefix)."""
        x, layout = self.tokens, self.layout
        ids = layout.segment_ids(x.device)
        if not include_prefix and layout.num_prefix:
            keep = torch.ones(layout.total, dtype=torch.bool, device=x.device)
            keep[layout.first_rows(layout.num_prefix, x.device)] = False
            x, ids = x[keep], ids[keep]
        n, d = len(layout), x.shape[-1]
        index = ids[:, None].expand(-1, d)
        outs = []
        if kind in ("avg", "avgmax"):
            counts = torch.bincount(ids, minlength=n).to(x.dtype)[:, None]
            outs.append(x.new_zeros(n, d).scatter_add(0, index, x) / counts)
        if kind in ("max", "avgmax"):
            outs.append(x.new_full((n, d), -math.inf).scatter_reduce(0, index, x, "amax", include_self=True))
        if not outs:
            raise RectViTError(f"packed pooling must be 'avg', 'max' or 'avgmax', got {kind!r}.")
        return outs[0] if len(outs) == 1 else 0.5 * (outs[1] + outs[0])


# --------------------------------------------------------------------------------------------------
# Attention within each image


def resolve_backend(attention: str, q: torch.Tensor, dropout_p: float) -> str:
    """The backend ``"auto"`` means for these queries; an explicit choice is checked and kept."""
    _check_backend(attention)
    half = q.dtype in (torch.float16, torch.bfloat16)
    if attention == "auto":
        if q.is_cuda:
            usable = half and dropout_p == 0.0 and _varlen_attn() is not None and q.shape[-1] % 8 == 0
            return "varlen" if usable and q.shape[-1] <= 256 else "nested"
        return "segments"
    if attention == "varlen":
        if _varlen_attn() is None:
            raise RectViTError("attention='varlen' needs torch.nn.attention.varlen (torch >= 2.9); use 'auto'.")
        if not (q.is_cuda and half):
            raise RectViTError(
                f"attention='varlen' runs Flash attention on CUDA in float16/bfloat16, got {q.dtype} on "
                f"{q.device}; use attention='auto' or run under torch.autocast('cuda', torch.bfloat16)."
            )
        if dropout_p:
            raise RectViTError("attention='varlen' has no attention dropout; use 'segments' or 'nested'.")
    return attention


def _varlen_attn() -> Callable | None:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def packed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    layout: PackedLayout,
    num_queries: int | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Softmax attention of each image's queries over that image's keys only.

    ``q`` ``(Tq, heads, d)``, ``k``/``v`` ``(T, heads, d)`` with rows as ``layout`` says; ``Tq = T``,
    or ``N * num_queries`` when only the first ``num_queries`` tokens of each image query.
    Returns ``(Tq, heads, d)``. No ``(T, T)`` mask is ever built.
    """
    backend = resolve_backend(layout.attention, q, dropout_p)
    if backend == "varlen":
        return _varlen(q, k, v, layout, num_queries)
    if backend == "nested":
        return _nested(q, k, v, layout, num_queries, dropout_p)
    return _segments(q, k, v, layout, num_queries, dropout_p)


def _segments(q, k, v, layout: PackedLayout, num_queries: int | None, dropout_p: float) -> torch.Tensor:
    # split (not slicing) so that backward joins the segments' gradients in one concatenation
    # instead of zero-filling a full-length gradient per segment
    lengths = list(layout.lengths)
    qs = q.split(lengths if num_queries is None else num_queries)
    outs = [
        F.scaled_dot_product_attention(
            qi.transpose(0, 1), ki.transpose(0, 1), vi.transpose(0, 1), dropout_p=dropout_p
        ).transpose(0, 1)
        for qi, ki, vi in zip(qs, k.split(lengths), v.split(lengths))
    ]
    return torch.cat(outs) if len(outs) > 1 else outs[0].contiguous()


def _nested(q, k, v, layout: PackedLayout, num_queries: int | None, dropout_p: float) -> torch.Tensor:
    kv_offsets = layout.cu_seqlens(k.device).long()
    q_offsets = kv_offsets if num_queries is None else layout.cu_seqlens(q.device, num_queries).long()

    def jagged(t: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        # SDPA on jagged tensors wants (N, j, heads, d) storage that is contiguous
        return torch.nested.nested_tensor_from_jagged(t.contiguous(), offsets).transpose(1, 2)

    out = F.scaled_dot_product_attention(
        jagged(q, q_offsets), jagged(k, kv_offsets), jagged(v, kv_offsets), dropout_p=dropout_p
    )
    return out.transpose(1, 2).values()


def _varlen(q, k, v, layout: PackedLayout, num_queries: int | None) -> torch.Tensor:
    varlen_attn = _varlen_attn()
    cu_k = layout.cu_seqlens(k.device)
    max_k = max(layout.lengths)
    if num_queries is None:
        return varlen_attn(q, k, v, cu_k, cu_k, max_k, max_k)
    cu_q = layout.cu_seqlens(q.device, num_queries)
    return varlen_attn(q, k, v, cu_q, cu_k, num_queries, max_k)
