"""ResizeToBudget and RandomResizedCropToBudget against torchvision.transforms.v2 (the oracle for tensor
resizing and cropping: max abs diff <= 1e-5 float32, <= 1 for uint8) and Pillow, inside v2.Compose."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from rectvit import InputSizeError
from rectvit.data import RandomResizedCropToBudget, ResizeToBudget, size_for_budget

v2 = pytest.importorskip("torchvision.transforms.v2")
tv_tensors = pytest.importorskip("torchvision.tv_tensors")
Image = pytest.importorskip("PIL.Image")
F = v2.functional


def _image(c=3, h=37, w=301, seed=0):
    return torch.rand(c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize(
    "shape, patch, budget", [((3, 37, 301), 8, 64), ((1, 128, 1000), 16, 100), ((3, 50, 50), 8, 16)]
)
def test_tensor_resize_equals_torchvision(shape, patch, budget, interpolation):
    x = _image(*shape)
    t = ResizeToBudget(patch, budget, interpolation=interpolation)
    size = size_for_budget(shape[1:], patch, budget)
    out = t(x)
    assert tuple(out.shape) == (shape[0], *size) == (shape[0], *t.output_size(shape[1:]))
    mode = getattr(v2.InterpolationMode, interpolation.upper())
    ref = F.resize(x, list(size), interpolation=mode, antialias=True)
    assert (out - ref).abs().max() <= 1e-5


def test_uint8_and_batched_tensors():
    x = (_image() * 255).round().to(torch.uint8)
    t = ResizeToBudget(8, 64)
    out = t(x)
    assert out.dtype == torch.uint8
    ref = F.resize(x, list(t.output_size((37, 301))), antialias=True)
    assert (out.int() - ref.int()).abs().max() <= 1
    batch = torch.stack([_image(seed=s) for s in range(3)])
    outs = t(batch)
    assert outs.shape == (3, 3, *t.output_size((37, 301)))
    assert torch.equal(outs[1], t(batch[1]))


def test_already_at_budget_is_a_copy():
    x = _image(3, 32, 64)
    out = ResizeToBudget(8, 32)(x)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


def test_pil_resize_equals_torchvision_on_pil():
    arr = (_image().permute(1, 2, 0) * 255).to(torch.uint8).numpy()
    img = Image.fromarray(arr)
    t = ResizeToBudget(8, 64)
    out = t(img)
    size = t.output_size((37, 301))
    assert (out.height, out.width) == size
    ref = F.resize(img, list(size), antialias=True)
    assert np.array_equal(np.asarray(out), np.asarray(ref))


def test_composes_with_torchvision_v2():
    arr = (_image().permute(1, 2, 0) * 255).to(torch.uint8).numpy()
    img = Image.fromarray(arr)
    t = ResizeToBudget(8, 64)
    size = t.output_size((37, 301))
    pipeline = v2.Compose([v2.ToImage(), t, v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)])
    out = pipeline(img)
    assert isinstance(out, tv_tensors.Image) and tuple(out.shape) == (3, *size)
    ref = v2.Compose([v2.ToImage(), v2.Resize(list(size), antialias=True), v2.ToDtype(torch.float32, scale=True)])(img)
    assert ((out * 0.5 + 0.5) - ref).abs().max() <= 1 / 255 + 1e-6  # uint8 resizes round alike to within 1
    # PIL first, then to a tensor; and the random crop in the same place
    assert tuple(v2.Compose([t, v2.PILToTensor()])(img).shape) == (3, *size)
    crop = RandomResizedCropToBudget(8, 64)
    out = v2.Compose([v2.ToImage(), crop, v2.RandomHorizontalFlip()])(img)
    assert isinstance(out, tv_tensors.Image) and tuple(out.shape) == (3, *size)


def test_random_resized_crop_equals_torchvision_resized_crop():
    x = _image(3, 64, 512)
    t = RandomResizedCropToBudget(16, 40, scale=(0.3, 0.9), ratio=(0.5, 2.0))
    size = t.output_size((64, 512))
    for seed in range(5):
        random.seed(seed)
        box = t.crop_box((64, 512))
        random.seed(seed)
        out = t(x)
        assert tuple(out.shape[-2:]) == size
        ref = F.resized_crop(x, *box, list(size), antialias=True)
        assert (out - ref).abs().max() <= 1e-5
        # the PIL path crops the same box
        random.seed(seed)
        pil = Image.fromarray((x.permute(1, 2, 0) * 255).to(torch.uint8).numpy())
        out_pil = t(pil)
        ref_pil = F.resized_crop(pil, *box, list(size), antialias=True)
        assert (out_pil.height, out_pil.width) == size and np.array_equal(np.asarray(out_pil), np.asarray(ref_pil))


def test_random_crop_boxes_follow_scale_and_ratio():
    t = RandomResizedCropToBudget(8, 64, scale=(0.2, 0.6), ratio=(0.5, 2.0))
    height, width = 200, 800
    random.seed(0)
    for _ in range(300):
        top, left, h, w = t.crop_box((height, width))
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
        if (h, w) == (height, width):  # the fallback after 10 failed tries
            continue
        # rounding each side to whole pixels moves area and aspect by about a pixel per side
        assert 0.2 * 0.97 <= h * w / (height * width) <= 0.6 * 1.03
        rel = (w / h) / (width / height)
        assert 0.5 * 0.95 <= rel <= 2.0 * 1.05


@pytest.mark.parametrize(
    "build, fragment",
    [
        (lambda: ResizeToBudget(8, 64, interpolation="area"), "interpolation"),
        (lambda: ResizeToBudget(8, 0), "max_tokens"),
        (lambda: ResizeToBudget(0, 64), "positive"),
        (lambda: RandomResizedCropToBudget(8, 64, scale=(0.5, 1.5)), "at most 1"),
        (lambda: RandomResizedCropToBudget(8, 64, scale=(0.0, 1.0)), "0 < low"),
        (lambda: RandomResizedCropToBudget(8, 64, ratio=(2.0, 1.0)), "low <= high"),
        (lambda: RandomResizedCropToBudget(8, 64, ratio=0.5), "pair"),
    ],
)
def test_bad_construction(build, fragment):
    with pytest.raises(InputSizeError, match=fragment):
        build()


@pytest.mark.parametrize("img", [torch.zeros(5), torch.zeros(4, 4), "image.png", [[0.0]]])
def test_bad_images(img):
    with pytest.raises(InputSizeError, match="C, H, W"):
        ResizeToBudget(8, 64)(img)


@pytest.mark.slow  # a subprocess that imports torch
def test_import_pulls_in_neither_pillow_nor_torchvision():
    import subprocess
    import sys

    code = (
        "import sys, torch; before = set(sys.modules); import rectvit.data;"
        "print(sorted(m for m in ('PIL', 'torchvision', 'timm') if m in sys.modules and m not in before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
