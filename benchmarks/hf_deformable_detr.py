"""The HF Deformable DETR baseline of the time-to-accuracy benchmark
(``bench_time_to_accuracy.py``; also timed by ``bench_detector.py``):
``transformers.DeformableDetrForObjectDetection`` trained from random weights the way the
original Deformable DETR (fundamentalvision/Deformable-DETR) trains it, by a plain loop.
The loop, data and evaluation here are shared with the RT-DETR baseline (``hf_rt_detr.py``).

Model (the original two-stage recipe, scaled to d_model 128): 3 encoder + 3 decoder layers,
FFN 512, 8 heads, 4 points, 4 feature levels (backbone strides 8 / 16 / 32 plus one extra
stride-2 conv level, stride 64), 100 queries, two-stage and iterative box refinement,
auxiliary losses; backbone timm ``--hf-backbone`` (``resnet18``) built by transformers'
``TimmBackbone`` with ``use_pretrained_backbone=False`` (nothing is downloaded;
``HF_HUB_OFFLINE=1``). Three things transformers does differently from the original are
put back:

- BatchNorm: HF turns every BatchNorm into a frozen one, meant for a pretrained backbone;
  from random weights that leaves the ResNet unnormalised and, as timm zero-initialises each
  block's last BatchNorm, every residual branch permanently off. The frozen norms become
  trainable ``nn.BatchNorm2d`` with the same initial values (the usual from-scratch ResNet).
- Head initialisation: the original sets every class head's bias to the focal prior
  -log((1 - 0.01) / 0.01) and zeroes the last layer of every box head (two-stage: bias 0
  too); HF 5.x leaves them at their default init.
- Losses: the original weights classification 2 (matcher class cost 2, loss coefficient 2;
  HF: 1), L1 5, GIoU 2, and in two-stage mode also trains the encoder's proposal head (the
  class / box heads applied to every encoder token, whose class-0 score picks the top-k
  queries): the same focal + L1 + GIoU terms and Hungarian matcher with every target
  relabelled class 0 (``encoder_proposal_loss``). HF's loss omits it, so the heads that
  choose the decoder's queries get no gradient at all.

Training: AdamW (lr ``--hf-lr``, default 2e-4, x 0.1 on the sampling offsets as the
original's ``lr_linear_proj_mult``; weight decay 1e-4, constant; the backbone at the full lr,
as it starts from random weights), gradient norm clipped at 0.1, batch 8, labels as HF expects (``class_labels``, boxes cx, cy, w, h
normalised by the unpadded image size). Inputs: images resized to a long side of
``LONG_SIDE`` px (aspect kept, random horizontal flips in training), ImageNet-normalised,
padded to a multiple of 32 with a ``pixel_mask``. Predictions: sigmoid scores, top 100 of
queries x classes (HF's post-processing), scored by pycocotools (COCO bbox AP).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import time
from pathlib import Path

import torch

LONG_SIDE, BATCH, VAL_BATCH, SIZE_DIVISOR = 128, 8, 8, 32
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LOSS_WEIGHTS = dict(loss_ce=2.0, loss_bbox=5.0, loss_giou=2.0)  # the original's coefficients


def _quiet_coco(ann_file: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


class CocoBoxes(torch.utils.data.Dataset):
    """COCO boxes for HF: image resized to a long side of 128 px, or to 128 x 128 when
    ``square`` (RT-DETR's fixed-size resize); random flip when training.

    Item: (pixels (3, h, w) float, ImageNet-normalised when ``normalize`` else in [0, 1];
    target dict(class_labels (n,) long, boxes (n, 4) cx, cy, w, h normalised by (w, h));
    meta dict(image_id, orig_size (H, W))).
    """

    def __init__(
        self, ann_file: Path, image_dir: Path, train: bool, square=False, normalize=True
    ) -> None:
        self.coco = _quiet_coco(ann_file)
        self.image_dir, self.train = image_dir, train
        self.square, self.normalize = square, normalize
        ids = sorted(self.coco.getImgIds())
        self.ids = [i for i in ids if self.coco.getAnnIds(imgIds=i)] if train else ids
        self.label_of = {c: i for i, c in enumerate(sorted(self.coco.getCatIds()))}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        import cv2

        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        image = cv2.imread(str(self.image_dir / info["file_name"]), cv2.IMREAD_COLOR)
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        height, width = image.shape[:2]
        scale = LONG_SIDE / max(height, width)
        w, h = int(width * scale + 0.5), int(height * scale + 0.5)
        if self.square:
            w = h = LONG_SIDE
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        anns = [a for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))]
        anns = [a for a in anns if not a.get("iscrowd", 0)]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).view(-1, 4)
        x0, y0 = xywh[:, 0] * w / width, xywh[:, 1] * h / height
        x1, y1 = x0 + xywh[:, 2] * w / width, y0 + xywh[:, 3] * h / height
        pixels = torch.from_numpy(image).permute(2, 0, 1).float() / 255
        if self.train and torch.rand(()) < 0.5:
            pixels = pixels.flip(-1)
            x0, x1 = w - x1, w - x0
        x0, x1, y0, y1 = x0.clamp(0, w), x1.clamp(0, w), y0.clamp(0, h), y1.clamp(0, h)
        keep = (x1 > x0) & (y1 > y0)
        boxes = torch.stack([(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h], 1)
        labels = torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.long)
        if self.normalize:
            mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
            pixels = (pixels - mean) / torch.tensor(IMAGENET_STD)[:, None, None]
        target = dict(class_labels=labels[keep], boxes=boxes[keep])
        return pixels, target, dict(image_id=image_id, orig_size=(height, width))


def collate(items: list) -> tuple[dict, list[dict]]:
    """-> (dict(pixel_values (B, 3, H, W), pixel_mask (B, H, W) 1 = image, labels), metas);
    H, W: the largest of the batch rounded up to a multiple of 32, padding 0 (mean colour)."""
    height = max(p.shape[1] for p, _, _ in items)
    width = max(p.shape[2] for p, _, _ in items)
    height, width = (-(-s // SIZE_DIVISOR) * SIZE_DIVISOR for s in (height, width))
    pixels = torch.zeros(len(items), 3, height, width)
    mask = torch.zeros(len(items), height, width, dtype=torch.long)
    for i, (p, _, _) in enumerate(items):
        pixels[i, :, : p.shape[1], : p.shape[2]] = p
        mask[i, : p.shape[1], : p.shape[2]] = 1
    labels = [t for _, t, _ in items]
    return dict(pixel_values=pixels, pixel_mask=mask, labels=labels), [m for _, _, m in items]


def build_hf_model(num_classes: int, backbone: str):
    """Deformable DETR of the module doc (original recipe), random weights, trainable BN."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only: nothing to download
    from torch import nn
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection

    config = DeformableDetrConfig(
        backbone=backbone,  # transformers' TimmBackbone, use_pretrained_backbone=False
        d_model=128, encoder_layers=3, decoder_layers=3, encoder_ffn_dim=512,
        decoder_ffn_dim=512, encoder_attention_heads=8, decoder_attention_heads=8,
        num_feature_levels=4, encoder_n_points=4, decoder_n_points=4, num_queries=100,
        two_stage=True, two_stage_num_proposals=100, with_box_refine=True, auxiliary_loss=True,
        class_cost=2, bbox_cost=5, giou_cost=2, id2label={i: str(i) for i in range(num_classes)},
    )  # fmt: skip
    if config.backbone_config.use_pretrained_backbone:
        raise RuntimeError("the HF backbone would load pretrained weights")
    model = DeformableDetrForObjectDetection(config)

    def unfreeze(module: nn.Module) -> None:  # frozen BatchNorm -> trainable (module doc)
        for name, child in module.named_children():
            if type(child).__name__.endswith("FrozenBatchNorm2d"):
                norm = nn.BatchNorm2d(child.weight.numel())
                with torch.no_grad():
                    for key in ("weight", "bias", "running_mean", "running_var"):
                        getattr(norm, key).copy_(getattr(child, key))
                setattr(module, name, norm)
            else:
                unfreeze(child)

    unfreeze(model.model.backbone)
    with torch.no_grad():  # the original's head init (module doc); shared with model.decoder
        for head in model.class_embed:
            head.bias.fill_(-math.log((1 - 0.01) / 0.01))
        for head in model.bbox_embed:
            head.layers[-1].weight.zero_()
            head.layers[-1].bias.zero_()
    return model


def encoder_proposal_loss(enc_logits, enc_coord_logits, labels: list[dict], config) -> dict:
    """The original two-stage loss on the encoder's proposals, unweighted.

    enc_logits (B, S, K): the class head on every encoder token (S: all levels' tokens);
    enc_coord_logits (B, S, 4): the box head plus the token's proposal, before sigmoid;
    labels: HF targets. Every target becomes class 0 (the score that picks the top-k
    queries); matched by HF's Deformable DETR matcher, scored by its focal / L1 / GIoU
    losses, each normalised by the number of target boxes. -> dict(loss_ce_enc,
    loss_bbox_enc, loss_giou_enc).
    """
    from transformers.loss.loss_deformable_detr import (
        DeformableDetrHungarianMatcher,
        DeformableDetrImageLoss,
    )

    matcher = DeformableDetrHungarianMatcher(
        class_cost=config.class_cost, bbox_cost=config.bbox_cost, giou_cost=config.giou_cost
    )
    criterion = DeformableDetrImageLoss(
        matcher, config.num_labels, config.focal_alpha, losses=["labels", "boxes"]
    )
    one_class = [dict(t, class_labels=torch.zeros_like(t["class_labels"])) for t in labels]
    outputs = dict(logits=enc_logits, pred_boxes=enc_coord_logits.sigmoid())
    return {f"{k}_enc": v for k, v in criterion(outputs, one_class).items()}


def original_loss(out, labels: list[dict], config) -> tuple[torch.Tensor, dict]:
    """The original Deformable DETR loss of an HF forward run with ``labels``: HF's
    per-layer terms (``out.loss_dict``) re-weighted by ``LOSS_WEIGHTS`` plus, in two-stage
    mode, ``encoder_proposal_loss``. -> (loss, dict of every unweighted term)."""
    terms = dict(out.loss_dict)
    if config.two_stage:
        terms.update(
            encoder_proposal_loss(
                out.enc_outputs_class, out.enc_outputs_coord_logits, labels, config
            )
        )
    weighted = [
        v * LOSS_WEIGHTS["_".join(k.split("_")[:2])]
        for k, v in terms.items()
        if k.startswith("loss_")
    ]  # loss_ce, loss_ce_0 (decoder layer 0), loss_ce_enc ... -> LOSS_WEIGHTS["loss_ce"]
    loss = torch.stack(weighted).sum()
    return loss, terms


@torch.no_grad()
def evaluate_hf(model, loader, coco_gt, cat_of: dict[int, int]) -> dict[str, float]:
    """COCO bbox AP of the model's top-100 detections per image over ``loader`` (HF's
    post-processing of sigmoid-scored DETRs: top 100 of queries x classes)."""
    from pycocotools.cocoeval import COCOeval

    was_training = model.training
    model.eval()
    detections = []
    for inputs, metas in loader:
        out = model(pixel_values=inputs["pixel_values"], pixel_mask=inputs["pixel_mask"])
        prob = out.logits.sigmoid()  # (B, Q, C)
        num_classes = prob.shape[-1]
        scores, index = prob.flatten(1).topk(min(100, prob[0].numel()), dim=1)  # (B, k)
        query, label = index // num_classes, index % num_classes
        boxes = out.pred_boxes.gather(1, query[..., None].expand(-1, -1, 4))  # (B, k, 4) cxcywh
        for meta, s, lab, box in zip(metas, scores, label, boxes):
            height, width = meta["orig_size"]
            cx, cy, w, h = box.unbind(-1)
            xywh = torch.stack([(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height])
            for j in range(len(s)):
                detections.append(
                    dict(
                        image_id=meta["image_id"],
                        category_id=cat_of[int(lab[j])],
                        bbox=[round(float(v), 2) for v in xywh[:, j]],
                        score=float(s[j]),
                    )
                )
    model.train(was_training)
    if not detections:
        return dict(bbox_mAP=0.0, bbox_mAP_50=0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(detections), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return dict(bbox_mAP=float(coco_eval.stats[0]), bbox_mAP_50=float(coco_eval.stats[1]))


def train_loop(tag: str, args, model, train_set, val_set, step, eval_model=None) -> dict:
    """Trains until ``args.minutes`` (or ``args.epochs``), evaluating after every epoch.

    ``step(inputs) -> loss`` runs one optimisation step (forward, backward, update);
    ``eval_model`` (default ``model``) is evaluated. Minutes count from the first
    iteration and include the evaluations; a partial epoch is not evaluated, nor is an
    evaluation that ends after the budget counted. -> dict(rows of (epoch, iteration,
    minutes, AP), iterations, s_per_iter, params_m, stopped_at_budget).
    """
    cat_of = {label: cat for cat, label in val_set.label_of.items()}
    loader = torch.utils.data.DataLoader(
        train_set, BATCH, shuffle=True, num_workers=1, collate_fn=collate,
        persistent_workers=True, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    val_loader = torch.utils.data.DataLoader(
        val_set, VAL_BATCH, shuffle=False, num_workers=1, collate_fn=collate
    )
    budget_s, rows, iters, epoch, out_of_time = args.minutes * 60, [], 0, 0, False
    start = time.perf_counter()
    while not out_of_time and (not args.epochs or epoch < args.epochs):
        epoch += 1
        for inputs, _ in loader:
            loss = step(inputs)
            iters += 1
            elapsed = time.perf_counter() - start
            if iters % 20 == 0:
                print(f"[{tag}] epoch {epoch} iter {iters} loss {loss:.3f} "
                      f"{elapsed / 60:.1f} min", flush=True)  # fmt: skip
            if elapsed >= budget_s:
                out_of_time = True
                break
        if out_of_time:
            break
        metrics = evaluate_hf(eval_model or model, val_loader, val_set.coco, cat_of)
        minutes = (time.perf_counter() - start) / 60
        print(f"[{tag}] epoch {epoch} iter {iters} val {metrics} at {minutes:.2f} min", flush=True)
        if minutes > args.minutes:
            break
        rows.append(dict(epoch=epoch, iteration=iters, minutes=minutes, **metrics))
    train_minutes = (time.perf_counter() - start) / 60
    return dict(
        rows=rows,
        stopped_at_budget=train_minutes >= args.minutes,
        iterations=iters,
        s_per_iter=train_minutes * 60 / iters if iters else None,  # evaluations included
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        batch=BATCH,
    )


def param_groups(model, lr: float) -> list[dict]:
    """The original's groups: lr x 0.1 on the deformable attention's sampling offsets and
    reference points (``lr_linear_proj_mult``), ``lr`` elsewhere, the backbone included
    (the original's backbone lr 2e-5 is for an ImageNet-pretrained ResNet; ours is random)."""
    slow, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            linear_proj = "sampling_offsets" in name or "reference_points" in name
            (slow if linear_proj else rest).append(p)
    return [dict(params=rest, lr=lr), dict(params=slow, lr=lr * 0.1)]


def run_hf(args, train_ann: Path, val_ann: Path) -> dict:
    """Trains the HF Deformable DETR baseline in this process until the budget."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    train_set = CocoBoxes(train_ann, args.data / "images" / "train", train=True)
    val_set = CocoBoxes(val_ann, args.data / "images" / "val", train=False)
    model = build_hf_model(len(val_set.label_of), args.hf_backbone).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, args.hf_lr), weight_decay=1e-4)

    def step(inputs: dict) -> float:
        loss, _ = original_loss(model(**inputs), inputs["labels"], model.config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.1)
        optimizer.step()
        return loss.item()

    run = train_loop("hf-deformable", args, model, train_set, val_set, step)
    return dict(run, backbone=args.hf_backbone, lr=args.hf_lr)
