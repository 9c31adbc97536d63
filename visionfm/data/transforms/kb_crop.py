"""``KBCrop``: the KITTI benchmark crop (Uhrig et al., "Sparsity Invariant CNNs", 3DV 2017).

KITTI raw frames are about 375 x 1242 px; the depth benchmark evaluates the bottom-centre
352 x 1216 window, which BTS / AdaBins / DPT also train and test on (the sky rows have no
LiDAR returns). The crop is recorded in ``homography_matrix``, so a depth head maps its
prediction back into the full frame (pixels outside the window come back as 0 = unknown).
"""

from __future__ import annotations

import numpy as np

from visionfm.registry import TRANSFORMS

from .geometric import update_homography

__all__ = ["KBCrop"]


@TRANSFORMS.register_module()
class KBCrop:
    """Crop ``height`` x ``width`` at the bottom centre of the image.

    Moves ``img`` (H, W, 3), ``gt_depth`` (H, W) and ``gt_sem_seg`` (H, W); sets
    ``img_shape`` and composes the shift into ``homography_matrix``. An image smaller than
    the window raises (a frame that is not KITTI-sized: drop the transform for it).
    """

    def __init__(self, height: int = 352, width: int = 1216) -> None:
        if height < 1 or width < 1:
            raise ValueError(f"KBCrop needs a positive size, got {height} x {width}")
        self.height, self.width = int(height), int(width)

    def __call__(self, results: dict) -> dict:
        h, w = results["img"].shape[:2]
        if h < self.height or w < self.width:
            raise ValueError(
                f"KBCrop({self.height}, {self.width}): image {results.get('img_path')} is only "
                f"{h} x {w} px"
            )
        top, left = h - self.height, (w - self.width) // 2
        window = (slice(top, top + self.height), slice(left, left + self.width))
        results["img"] = np.ascontiguousarray(results["img"][window])
        for key in ("gt_depth", "gt_sem_seg"):
            if key in results:
                results[key] = np.ascontiguousarray(results[key][window])
        results["img_shape"] = (self.height, self.width)
        shift = np.array([[1, 0, -left], [0, 1, -top], [0, 0, 1]], np.float32)
        update_homography(results, shift)
        return results

    def __repr__(self) -> str:
        return f"KBCrop(height={self.height}, width={self.width})"
