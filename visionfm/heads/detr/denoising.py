"""Contrastive denoising (CDN) queries of DINO (Zhang et al., "DINO: DETR with Improved
DeNoising Anchor Boxes for End-to-End Object Detection", ICLR 2023), after DN-DETR (Li et al.,
CVPR 2022).

During training, noised copies of the ground truth are fed to the decoder next to the
matching queries; each copy must reconstruct its box ("positive") or be rejected as no object
("negative"), so no matching is needed for them.

Layout of the ``num_dn = G * 2 * M`` denoising queries (G groups, M = most boxes of an image
in the batch): group g occupies ``[2 g M, 2 (g + 1) M)``; its first M slots are the positives
(slot j is box j of the image), the next M the negatives of the same boxes. Images with fewer
than M boxes leave the remaining slots as padding: no loss, and no query attends to them.

Noise, per copy of a box (``x1, y1, x2, y2`` normalised, width w, height h):

- label: replaced, with probability ``label_flip_prob``, by a different class chosen
  uniformly (DINO draws among all classes, so its effective flip rate is slightly lower; its
  ``label_noise_ratio=0.5`` corresponds to ``label_flip_prob=0.25``);
- box: each corner coordinate moves by ``lam * u * w / 2`` (x) or ``lam * u * h / 2`` (y) with
  a random sign, ``lam = box_noise_scale``, ``u ~ U[0, 1)`` for positives and ``U[1, 2)`` for
  negatives: positives stay within ``lam / 2`` of the box size, negatives lie between
  ``lam / 2`` and ``lam``. Boxes are then clipped to the image.

Attention mask (True = may attend) over ``[denoising queries, matching queries]``: matching
queries see only matching queries (the ground truth must not leak into them); group g sees
itself and the matching queries, never another group.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visionfm.ops.boxes import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh
from visionfm.registry import MODELS

__all__ = ["CdnQueryGenerator", "denoising_attn_mask", "denoising_matches"]


def denoising_attn_mask(
    num_groups: int, max_gt: int, num_matching: int, num_gt: Tensor | None = None
) -> Tensor:
    """Self-attention mask of the decoder with denoising queries; True = may attend.

    Args:
        num_groups: G; max_gt: M (slots per half group); num_matching: Q matching queries.
        num_gt: (B,) boxes per image; slots ``j >= num_gt[b]`` of image b are padding and
            masked as keys. None: every slot is real.

    Returns:
        (B, 1, N, N) bool with N = 2 G M + Q (B = 1 when ``num_gt`` is None).
    """
    size = 2 * max_gt
    num_dn = num_groups * size
    n = num_dn + num_matching
    group = torch.arange(n) // size  # group of each query; >= G for matching queries
    is_dn = torch.arange(n) < num_dn
    # a denoising query sees its own group and the matching queries; a matching query
    # sees the matching queries only
    mask = (group[:, None] == group[None, :]) & is_dn[:, None]
    mask |= ~is_dn[None, :]
    mask = mask[None, None]  # (1, 1, N, N)
    if num_gt is not None:
        slot = torch.arange(n, device=num_gt.device) % max(max_gt, 1)
        real = (slot[None, :] < num_gt[:, None]) | ~is_dn.to(num_gt.device)[None, :]  # (B, N)
        mask = mask.to(num_gt.device) & real[:, None, None, :]
    return mask


def denoising_matches(
    targets: list[dict[str, Tensor]], meta: dict[str, int]
) -> tuple[Tensor, dict[str, Tensor], list[tuple[Tensor, Tensor]]]:
    """The matching of denoising queries to the ground truth, known by construction.

    The batch's real (non-padding) denoising queries are treated as one image, in their
    (image, slot) order, against the concatenated ground truth; positives are matched to
    their box, negatives to nothing ("no object").

    Args:
        targets: B dicts with ``labels`` (N_b,) and ``boxes`` (N_b, 4) (and any other
            per-box key, e.g. a grounding head's ``class_map`` (N_b, C)), merged alike.
        meta: the generator's ``num_groups`` and ``max_gt``.

    Returns:
        ``valid`` (B, num_dn) bool (real slots), the merged target dict, and one
        ``(pred_idx, tgt_idx)`` pair into ``outputs[valid]`` and the merged target.
    """
    groups, max_gt = meta["num_groups"], meta["max_gt"]
    device = targets[0]["labels"].device
    num_gt = torch.tensor([len(t["labels"]) for t in targets], device=device)
    slot = torch.arange(groups * 2 * max_gt, device=device) % max_gt
    valid = slot[None, :] < num_gt[:, None]  # (B, num_dn)
    pred_idx, tgt_idx, offset, tgt_offset = [], [], 0, 0
    g = torch.arange(groups, device=device)
    for n in num_gt.tolist():  # real slots of an image: group-major, positives then negatives
        j = torch.arange(n, device=device)
        pred_idx.append(offset + (g[:, None] * 2 * n + j[None, :]).flatten())
        tgt_idx.append(tgt_offset + j.repeat(groups))
        offset, tgt_offset = offset + groups * 2 * n, tgt_offset + n
    merged = {k: torch.cat([t[k] for t in targets]) for k in targets[0]}
    return valid, merged, [(torch.cat(pred_idx), torch.cat(tgt_idx))]


@MODELS.register_module()
class CdnQueryGenerator(nn.Module):
    """Builds DINO's contrastive denoising queries from the ground truth.

    Args:
        num_classes: number of object classes.
        embed_dims: query width; the label embedding makes the content queries.
        num_dn_queries: the number of groups is ``num_dn_queries // M`` (at least 1), so about
            ``2 * num_dn_queries`` denoising queries per batch (DINO: 100).
        num_groups: a fixed number of groups instead (overrides ``num_dn_queries``).
        label_flip_prob: probability that a copy's label is replaced by another class.
        box_noise_scale: ``lam`` of the module doc (DINO: 1.0).
    """

    def __init__(
        self,
        num_classes: int,
        embed_dims: int,
        num_dn_queries: int = 100,
        num_groups: int | None = None,
        label_flip_prob: float = 0.25,
        box_noise_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if num_classes < 2 and label_flip_prob > 0:
            raise ValueError("label flipping needs at least two classes")
        self.num_classes = num_classes
        self.num_dn_queries = num_dn_queries
        self.num_groups = num_groups
        self.label_flip_prob = label_flip_prob
        self.box_noise_scale = box_noise_scale
        self.label_embed = nn.Embedding(num_classes, embed_dims)

    def extra_repr(self) -> str:
        return (
            f"num_dn_queries={self.num_dn_queries}, num_groups={self.num_groups}, "
            f"label_flip_prob={self.label_flip_prob}, box_noise_scale={self.box_noise_scale}"
        )

    def noise_labels(self, labels: Tensor) -> Tensor:
        """(N,) long -> (N,): each replaced by a different class with prob ``label_flip_prob``."""
        flip = torch.rand(labels.shape, device=labels.device) < self.label_flip_prob
        shift = torch.randint_like(labels, 1, max(self.num_classes, 2))
        return torch.where(flip, (labels + shift) % self.num_classes, labels)

    def noise_boxes(self, boxes: Tensor, negative: Tensor) -> Tensor:
        """boxes: (N, 4) normalised cxcywh; negative: (N,) bool -> (N, 4) noised, clipped."""
        xyxy = box_cxcywh_to_xyxy(boxes)
        half = boxes[:, 2:].repeat(1, 2) / 2  # (N, 4): w/2, h/2, w/2, h/2
        u = torch.rand_like(xyxy) + negative[:, None].to(xyxy.dtype)  # [0, 1) or [1, 2)
        sign = torch.randint_like(xyxy, 0, 2) * 2 - 1
        xyxy = xyxy + sign * u * half * self.box_noise_scale
        return box_xyxy_to_cxcywh(xyxy.clamp(0.0, 1.0))

    def forward(
        self, targets: list[dict[str, Tensor]], num_matching: int
    ) -> tuple[Tensor, Tensor, Tensor, dict[str, int]] | None:
        """Denoising queries for a batch.

        Args:
            targets: B dicts with ``labels`` (N_b,) long and ``boxes`` (N_b, 4) normalised
                cxcywh.
            num_matching: Q, the number of matching queries placed after them.

        Returns:
            None when the batch has no box; else ``query`` (B, num_dn, C) label embeddings,
            ``reference`` (B, num_dn, 4) noised boxes in [0, 1], ``attn_mask`` (B, 1, N, N)
            for N = num_dn + Q (see :func:`denoising_attn_mask`) and ``meta`` with
            ``num_groups`` and ``max_gt``.
        """
        num_gt = torch.tensor([len(t["labels"]) for t in targets])
        max_gt = int(num_gt.max()) if len(targets) else 0
        if max_gt == 0:
            return None
        groups = self.num_groups or max(1, self.num_dn_queries // max_gt)
        device = self.label_embed.weight.device
        b, size = len(targets), 2 * max_gt
        labels = torch.zeros(b, groups, 2, max_gt, dtype=torch.long, device=device)
        boxes = torch.zeros(b, groups, 2, max_gt, 4, device=device)
        for i, t in enumerate(targets):
            n = len(t["labels"])
            if n == 0:
                continue
            lab = t["labels"].to(device).repeat(groups * 2)  # (G * 2 * n,): group, half, box
            box = t["boxes"].to(device).float().repeat(groups * 2, 1)
            negative = torch.arange(groups * 2, device=device).repeat_interleave(n) % 2 == 1
            labels[i, :, :, :n] = self.noise_labels(lab).view(groups, 2, n)
            boxes[i, :, :, :n] = self.noise_boxes(box, negative).view(groups, 2, n, 4)
        query = self.label_embed(labels.view(b, groups * size))  # (B, num_dn, C)
        reference = boxes.view(b, groups * size, 4).to(query.dtype)
        mask = denoising_attn_mask(groups, max_gt, num_matching, num_gt.to(device))
        return query, reference, mask, dict(num_groups=groups, max_gt=max_gt)
