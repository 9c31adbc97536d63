"""Maps from the network input back to the original image (visionfm.ops.geometry)."""

import numpy as np
import torch

from visionfm.data.transforms import RandomCrop, RandomFlip, Resize
from visionfm.ops.geometry import boxes_to_original, dense_to_original, points_to_original


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


def test_dense_to_original_cropped_pixels_read_zero():
    maps = torch.ones(1, 10, 10)
    meta = dict(
        ori_shape=(10, 20), homography_matrix=np.eye(3, dtype=np.float32), img_shape=(10, 10)
    )
    back = dense_to_original(maps, meta)
    assert back.shape == (1, 10, 20)
    assert torch.all(back[:, :, :10] == 1) and torch.all(back[:, :, 10:] == 0)


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
