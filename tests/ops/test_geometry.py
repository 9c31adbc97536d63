"""Maps from the network input back to the original image (visionfm.ops.geometry)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from visionfm.data.transforms import RandomCrop, RandomFlip, Resize
from visionfm.ops.geometry import (
    boxes_to_original,
    dense_to_original,
    points_to_original,
)


def _pipeline(results, crop=None):
    results = Resize(scale=(40, 30), keep_ratio=False)(results)  # 15x20 -> 30x40: 2x exactly
    results = RandomFlip(prob=1.0)(results)
    if crop is not None:
        results = crop(results)
    return results


def test_dense_to_original_undoes_resize_flip_and_padding():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 10, size=(15, 20)).astype(np.float32)
    results = dict(img=np.zeros((15, 20, 3), np.uint8), gt_depth=depth, ori_shape=(15, 20))
    results = _pipeline(results)
    assert results["gt_depth"].shape == (30, 40)
    padded = np.zeros((32, 48), np.float32)  # batch padding on the right / bottom
    padded[:30, :40] = results["gt_depth"]
    meta = dict(
        ori_shape=(15, 20), pad_shape=(32, 48), homography_matrix=results["homography_matrix"]
    )
    back = dense_to_original(torch.from_numpy(padded)[None], meta, mode="nearest")
    np.testing.assert_array_equal(back[0].numpy(), depth)
    # a half-resolution map (stride 2 over the padded input) maps back too
    half = torch.from_numpy(padded)[None, None, ::2, ::2].contiguous()[0]
    back = dense_to_original(half, meta, mode="nearest")
    np.testing.assert_array_equal(back[0].numpy(), depth)


def test_dense_to_original_cropped_pixels_read_fill_or_the_nearest_value():
    maps = torch.ones(1, 10, 10)
    meta = dict(
        ori_shape=(10, 20), homography_matrix=np.eye(3, dtype=np.float32), img_shape=(10, 10)
    )
    back = dense_to_original(maps, meta)
    assert back.shape == (1, 10, 20)
    assert torch.all(back[:, :, :10] == 1) and torch.all(back[:, :, 10:] == 0)
    assert torch.all(dense_to_original(maps, meta, fill=-1.0)[:, :, 10:] == -1)
    ramp = torch.arange(10.0).expand(10, 10)  # (h, w) maps come back (H0, W0)
    nearest = dense_to_original(ramp, meta, fill=None)
    assert nearest.shape == (10, 20) and torch.all(nearest[:, 10:] == 9)


def test_dense_to_original_never_reads_the_batch_padding():
    """Valid region = img_shape: the bottom / right border pixels do not blend in the output
    over the batch padding, and pixels cropped away but inside the padded batch read
    ``fill``, not the padding."""
    maps = torch.full((1, 8, 12), 100.0)  # padded batch (8, 12); the image is its (6, 9)
    maps[:, :6, :9] = 1.0
    # the image was downscaled 2x: the original's last row / column centres map to input
    # 5.75 / 8.75, past the last image pixel centres (5.5 / 8.5), next to the padding
    meta = dict(img_shape=(6, 9), ori_shape=(12, 18), scale_factor=(0.5, 0.5))
    back = dense_to_original(maps, meta, input_shape=(8, 12))
    assert back.shape == (1, 12, 18) and torch.all(back == 1)
    # cropped: the original (6, 12) image was cut to its left 9 columns; columns 9..11 map
    # into the batch padding (input x 9..12 < 12) and read fill
    crop = dict(img_shape=(6, 9), ori_shape=(6, 12), homography_matrix=np.eye(3))
    back = dense_to_original(maps, crop, input_shape=(8, 12))
    assert torch.all(back[:, :, :9] == 1) and torch.all(back[:, :, 9:] == 0)
    # rescale=False: the unpadded input (img_shape), nothing else undone
    assert torch.all(dense_to_original(maps, meta, input_shape=(8, 12), rescale=False) == 1)
    assert dense_to_original(maps, meta, input_shape=(8, 12), rescale=False).shape == (1, 6, 9)


def test_dense_to_original_equals_interpolate_for_a_plain_resize():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 16, 24, generator=g)
    for ori in [(40, 52), (9, 11)]:  # up- and down-sampling
        meta = dict(img_shape=(16, 24), ori_shape=ori, scale_factor=(24 / ori[1], 16 / ori[0]))
        out = dense_to_original(logits, meta)
        ref = F.interpolate(logits[None], size=ori, mode="bilinear", align_corners=False)[0]
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # flipped (metainfo without a homography): the same as flipping back, then resizing
    meta = dict(img_shape=(16, 24), ori_shape=(40, 52), scale_factor=(24 / 52, 16 / 40), flip=True)
    ref = F.interpolate(logits.flip(-1)[None], size=(40, 52), mode="bilinear")[0]
    torch.testing.assert_close(dense_to_original(logits, meta), ref, atol=1e-5, rtol=0)
    # autocast outputs come back in float32
    assert dense_to_original(logits.bfloat16(), meta).dtype == torch.float32


def test_dense_to_original_rejects_bad_input():
    meta = dict(ori_shape=(4, 4))
    with pytest.raises(ValueError, match="mode"):
        dense_to_original(torch.zeros(1, 4, 4), meta, mode="bicubic")
    with pytest.raises(TypeError, match="floating point"):
        dense_to_original(torch.zeros(1, 4, 4, dtype=torch.long), meta, mode="nearest")


def test_points_and_boxes_round_trip():
    results = dict(
        img=np.zeros((15, 20, 3), np.uint8),
        gt_bboxes=np.array([[6.0, 5.0, 12.0, 10.0]], np.float32),
        ori_shape=(15, 20),
    )
    # the box lies inside every crop RandomCrop can draw, whatever numpy's global stream
    results = _pipeline(results, crop=RandomCrop(crop_size=(28, 36)))
    assert len(results["gt_bboxes"]) == 1
    meta = dict(ori_shape=(15, 20), homography_matrix=results["homography_matrix"])
    boxes = torch.from_numpy(results["gt_bboxes"])
    torch.testing.assert_close(
        boxes_to_original(boxes, meta), torch.tensor([[6.0, 5.0, 12.0, 10.0]])
    )
    pts = torch.tensor([[2.0, 3.0], [19.5, 0.25]])
    forward = torch.from_numpy(results["homography_matrix"]).double()
    moved = (torch.cat([pts.double(), torch.ones(2, 1, dtype=torch.float64)], 1) @ forward.T)[:, :2]
    torch.testing.assert_close(points_to_original(moved.float(), meta), pts, atol=1e-5, rtol=0)
    # without a homography, scale_factor (w, h) is undone
    meta = dict(scale_factor=(2.0, 4.0))
    torch.testing.assert_close(
        points_to_original(torch.tensor([[4.0, 4.0]]), meta), torch.tensor([[2.0, 1.0]])
    )
