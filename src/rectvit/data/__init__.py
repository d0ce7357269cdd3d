"""Native-resolution training data: sizes for a token budget, token-budget batches over ranks, streams.

- ``size_for_budget``, ``ResizeToBudget``, ``RandomResizedCropToBudget``: the largest
  aspect-preserving size whose patch grid fits a budget (tensors and PIL images; torchvision v2).
- ``TokenBudgetBatchSampler``: lists of indices packed under a token budget (online first-fit
  within a shuffled pool, oldest first), the same plan on every rank, lock-step, resumable.
- ``global_mean``: the loss over a step that weighs every image of every rank alike.
- ``TokenBudgetStream`` (with ``tar_samples``): the same packing over streamed shards, split over
  ranks and DataLoader workers.
- ``image_size``, ``ImageSizes``: sizes from image headers, for planning before decoding.

Pillow and torchvision (``pip install 'rectvit[data]'``) are imported only where used.
This package sits above the rest of rectvit: it uses the public API, and nothing imports it.
(The directory also holds the demo's trained weights, ``demo_vit.safetensors``, as package data.)
"""

from .budget import grid_tokens, image_tokens, size_for_budget
from .headers import ImageSizes, image_size
from .loss import global_mean
from .packing import Step, pack_steps, top_up
from .sampler import ImageIndex, TokenBudgetBatchSampler, kept_patches
from .stream import TokenBudgetStream, tar_samples
from .transforms import RandomResizedCropToBudget, ResizeToBudget

__all__ = [
    "size_for_budget",
    "grid_tokens",
    "image_tokens",
    "ResizeToBudget",
    "RandomResizedCropToBudget",
    "TokenBudgetBatchSampler",
    "ImageIndex",
    "kept_patches",
    "global_mean",
    "TokenBudgetStream",
    "tar_samples",
    "image_size",
    "ImageSizes",
    "pack_steps",
    "top_up",
    "Step",
]
