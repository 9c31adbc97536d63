"""Top-down heatmap head: ViTPose (Xu et al., NeurIPS 2022) and SimpleBaseline-style decoders
with UDP Gaussian targets, a visibility-weighted MSE loss, DARK decoding and flip testing.

Each sample is one person crop (``visionfm.data.transforms.topdown``): ``gt_instances``
holds exactly one instance whose ``keypoints`` (1, K, 3) are in crop pixels, and the crop's
affine map is the sample's ``homography_matrix`` (original -> crop). Predictions come back
as ``pred_instances`` in ORIGINAL image pixels:

- ``keypoints`` (1, K, 3): ``[x, y, confidence]`` (the heatmap maximum);
- ``bboxes`` (1, 4): the person box the crop was cut around (metainfo ``bbox``), else the
  crop's bounding box in the original image;
- ``scores`` (1,): the box's score (metainfo ``bbox_score``, else 1); the keypoint metric
  rescores instances with the keypoint confidences;
- ``labels`` (1,): metainfo ``bbox_label``, else 0.

Flip testing: the task model (:class:`~visionfm.models.TopDownPoseEstimator`) also runs
the backbone on the mirrored crops when ``flip_test`` is set and passes those features as
``flip_feats``; their heatmaps are mirrored back with ``flip_pairs`` (exact under UDP, see
``codec``) and averaged with the direct ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor, nn

from visionfm.data.batch import batch_input_shape
from visionfm.data.transforms.geometric import COCO_FLIP_PAIRS
from visionfm.ops.geometry import boxes_to_original, points_to_original
from visionfm.registry import MODELS

from ..base import Head
from .codec import UDPHeatmapCodec, flip_heatmaps

__all__ = ["TopDownHeatmapHead", "key_levels", "select_level"]


def select_level(feats: Mapping[str, Tensor], in_key: str | Sequence[str] | None) -> Tensor:
    """The ``in_key`` map of ``feats`` ((B, C, h, w)); None: the last level. Several keys:
    the maps resized (bilinear) to the first one's size and concatenated along channels,
    (B, sum C, h, w) (e.g. several ViT blocks' outputs)."""
    if in_key is None:
        return feats[list(feats)[-1]]
    keys = [in_key] if isinstance(in_key, str) else list(in_key)
    missing = [k for k in keys if k not in feats]
    if missing:
        raise KeyError(f"in_key {missing} not among the feature levels {list(feats)}")
    maps = [feats[k] for k in keys]
    size = maps[0].shape[-2:]
    maps = [
        m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear") for m in maps
    ]
    return maps[0] if len(maps) == 1 else torch.cat(maps, 1)


def key_levels(in_key: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """The levels :func:`select_level` reads for ``in_key`` (None: the last, unnamed)."""
    if in_key is None:
        return None
    return (in_key,) if isinstance(in_key, str) else tuple(in_key)


@MODELS.register_module()
class TopDownHeatmapHead(Head):
    """Heatmap head for person crops (see the module doc).

    Args:
        decoder: features (B, C, h, w) -> heatmaps (B, K, h', w'), e.g. ``ClassicDecoder``
            or ``SimpleDecoder``.
        in_key: feature level to decode (e.g. ``'block11'``), or several (concatenated, see
            :func:`select_level`); None: the last level.
        sigma: target Gaussian's standard deviation in heatmap pixels.
        blur_kernel: DARK blur before sub-pixel refinement (see ``UDPHeatmapCodec``).
        loss_weight: scale of the MSE loss.
        flip_test: average with the heatmaps of the mirrored crop at test time.
        flip_pairs: 0-based left/right keypoint index pairs (COCO's 17-keypoint pairs by
            default; use the dataset's ``metainfo['flip_pairs']`` for other layouts).
    """

    predicts = ("pred_instances",)
    # trains on person crops (one instance per sample), not on full images with many
    # instances: the every-backbone-with-every-head matrix test leaves it to its own tests
    crops_only = True

    def __init__(
        self,
        decoder: nn.Module,
        in_key: str | Sequence[str] | None = None,
        sigma: float = 2.0,
        blur_kernel: int | None = None,
        loss_weight: float = 1.0,
        flip_test: bool = True,
        flip_pairs: Sequence[Sequence[int]] | None = COCO_FLIP_PAIRS,
    ) -> None:
        super().__init__()
        self.decoder = decoder
        self.in_key = in_key
        self.codec = UDPHeatmapCodec(sigma, blur_kernel)
        self.loss_weight = loss_weight
        self.flip_test = flip_test
        self.flip_pairs = [tuple(int(i) for i in p) for p in flip_pairs or ()]

    @property
    def in_levels(self) -> tuple[str, ...] | None:
        return key_levels(self.in_key)

    def forward(self, feats: Mapping[str, Tensor], data_samples=None) -> Tensor:
        """``{level: (B, C, h, w)}`` -> heatmaps (B, K, h', w')."""
        return self.decoder(select_level(feats, self.in_key))

    # -- training -------------------------------------------------------------------------
    def targets(self, data_samples, input_hw, heatmap_hw, device) -> tuple[Tensor, Tensor]:
        """Gaussian targets (B, K, h, w) and keypoint weights (B, K) of the samples' single
        ground-truth instance (keypoints in input pixels)."""
        keypoints = []
        for sample in data_samples:
            gt = sample.get("gt_instances")
            if gt is None or "keypoints" not in gt or len(gt) != 1:
                found = (
                    "no gt_instances.keypoints"
                    if gt is None or "keypoints" not in gt
                    else (f"{len(gt)} instances")
                )
                raise ValueError(
                    "TopDownHeatmapHead trains on person crops with exactly one ground-truth "
                    f"instance with keypoints, got {found} (image {sample.metainfo.get('img_path')}"
                    "); use a top-down dataset (CocoKeypointDataset) and LoadAnnotations("
                    "with_keypoints=True) + TopDownAffine in the pipeline"
                )
            keypoints.append(gt.keypoints.to(device))
        heatmaps, weights = self.codec.encode(torch.cat(keypoints), input_hw, heatmap_hw)
        return heatmaps, weights

    def loss(self, feats: Mapping[str, Tensor], data_samples) -> dict[str, Tensor]:
        """``loss_kpt``: mean over batch, keypoints and pixels of the squared heatmap error,
        keypoints weighted by their target weight (0 for unlabelled ones)."""
        heatmaps = self(feats)
        input_hw = batch_input_shape(data_samples, heatmaps.shape[-2:])
        targets, weights = self.targets(
            data_samples, input_hw, heatmaps.shape[-2:], heatmaps.device
        )
        if targets.shape[1] != heatmaps.shape[1]:
            raise ValueError(
                f"the decoder predicts {heatmaps.shape[1]} heatmaps but the ground truth has "
                f"{targets.shape[1]} keypoints: set the decoder's out_channels to K"
            )
        error = (heatmaps - targets.to(heatmaps.dtype)) ** 2 * weights[..., None, None]
        return dict(loss_kpt=error.mean() * self.loss_weight)

    # -- inference ------------------------------------------------------------------------
    @torch.no_grad()
    def predict(
        self,
        feats: Mapping[str, Tensor],
        data_samples,
        flip_feats: Mapping[str, Tensor] | None = None,
        rescale: bool = True,
    ):
        """Fill each sample's ``pred_instances`` (see the module doc); ``flip_feats``: the
        features of the mirrored inputs for flip testing. ``rescale=False`` leaves keypoints
        and boxes in input pixels."""
        flipped = None if flip_feats is None else self(flip_feats)
        return self.predict_by_heatmaps(self(feats), data_samples, flipped, rescale)

    def predict_by_heatmaps(
        self,
        heatmaps: Tensor,
        data_samples,
        flipped: Tensor | None = None,
        rescale: bool = True,
    ) -> list:
        """Heatmaps (B, K, h, w) of the crops, and ``flipped`` (B, K, h, w) those of the
        mirrored crops (flip testing; as the network gives them, not yet mirrored back), from
        :meth:`forward` or an exported network (``visionfm.export``) -> the samples with
        ``pred_instances`` (see :meth:`predict`)."""
        if flipped is not None:
            heatmaps = 0.5 * (heatmaps + flip_heatmaps(flipped, self.flip_pairs))
        input_hw = batch_input_shape(data_samples, heatmaps.shape[-2:])
        coords, scores = self.codec.decode(heatmaps, input_hw)  # (B, K, 2), (B, K)
        for sample, xy, score in zip(data_samples, coords, scores):
            sample.pred_instances = self._instance(sample.metainfo, xy, score, input_hw, rescale)
        return list(data_samples)

    @staticmethod
    def _instance(meta: Mapping, xy: Tensor, score: Tensor, input_hw, rescale: bool):
        """One crop's InstanceData from its keypoints (K, 2) and confidences (K,)."""
        h, w = input_hw
        crop_box = xy.new_tensor([[0.0, 0.0, w, h]])
        if rescale:
            xy = points_to_original(xy, meta)
            box = meta.get("bbox")
            bbox = xy.new_tensor(box).reshape(1, 4) if box is not None else None
            if bbox is None:
                bbox = boxes_to_original(crop_box, meta)
        else:
            bbox = crop_box
        return InstanceData(
            bboxes=bbox,
            scores=xy.new_tensor([float(meta.get("bbox_score", 1.0))]),
            labels=torch.tensor([int(meta.get("bbox_label", 0))], device=xy.device),
            keypoints=torch.cat((xy, score[:, None]), -1)[None],  # (1, K, 3)
        )
