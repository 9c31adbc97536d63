"""The HF reference of the time-to-accuracy benchmark (``bench_time_to_accuracy.py``; also
timed by ``bench_detector.py``): ``transformers.DeformableDetrForObjectDetection`` of a size
comparable to our DINO demo, random weights, trained and evaluated by a plain loop.

Model: d_model 128, 3 encoder + 3 decoder layers, FFN 512, 8 heads, 4 points, 3 feature
levels, 30 queries, two-stage and iterative box refinement on, auxiliary losses on; backbone
timm ``--hf-backbone`` (``resnet18``) built by transformers' ``TimmBackbone`` with
``use_pretrained_backbone=False`` (nothing is downloaded; ``HF_HUB_OFFLINE=1``). HF turns
every BatchNorm into a frozen one, meant for a pretrained backbone; from random weights
that leaves the ResNet unnormalised and, as timm zero-initialises each block's last
BatchNorm, every residual branch permanently off. So the frozen norms are put back as
trainable ``nn.BatchNorm2d`` with the same initial values (the usual from-scratch ResNet).

Training: AdamW (lr ``--hf-lr``, default 2e-4, the Deformable DETR paper's; weight decay
1e-4, constant), gradient norm clipped at 0.1, the model's own loss (its Hungarian matcher,
focal classification, L1 and GIoU box terms on every decoder layer) with labels as HF
expects (``class_labels``, boxes as cx, cy, w, h normalised by the unpadded image size).
Inputs: images resized to a long side of ``LONG_SIDE`` px (aspect kept, random horizontal
flips in training), ImageNet-normalised, padded to a multiple of 32 with a ``pixel_mask``.
Predictions: HF's post-processing for Deformable DETR (sigmoid scores, top 100 of queries x
classes), scored by pycocotools (COCO bbox AP).
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from pathlib import Path

import torch

LONG_SIDE, BATCH, VAL_BATCH, SIZE_DIVISOR = 128, 4, 8, 32
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _quiet_coco(ann_file: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


class CocoBoxes(torch.utils.data.Dataset):
    """COCO boxes for HF: image resized to a long side of 128 px (random flip when training).

    Item: (pixels (3, h, w) float, ImageNet-normalised; target dict(class_labels (n,) long,
    boxes (n, 4) cx, cy, w, h normalised by (w, h)); meta dict(image_id, orig_size (H, W))).
    """

    def __init__(self, ann_file: Path, image_dir: Path, train: bool) -> None:
        self.coco = _quiet_coco(ann_file)
        self.image_dir, self.train = image_dir, train
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
        mean, std = (
            torch.tensor(IMAGENET_MEAN)[:, None, None],
            torch.tensor(IMAGENET_STD)[:, None, None],
        )
        target = dict(class_labels=labels[keep], boxes=boxes[keep])
        return (pixels - mean) / std, target, dict(image_id=image_id, orig_size=(height, width))


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
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only: nothing to download
    from torch import nn
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection

    config = DeformableDetrConfig(
        backbone=backbone,  # transformers' TimmBackbone, use_pretrained_backbone=False
        d_model=128, encoder_layers=3, decoder_layers=3, encoder_ffn_dim=512,
        decoder_ffn_dim=512, encoder_attention_heads=8, decoder_attention_heads=8,
        num_feature_levels=3, encoder_n_points=4, decoder_n_points=4, num_queries=30,
        two_stage=True, two_stage_num_proposals=30, with_box_refine=True, auxiliary_loss=True,
        id2label={i: str(i) for i in range(num_classes)},
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
    return model


@torch.no_grad()
def evaluate_hf(model, loader, coco_gt, cat_of: dict[int, int]) -> dict[str, float]:
    """COCO bbox AP of the model's top-100 detections per image over ``loader``."""
    from pycocotools.cocoeval import COCOeval

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
    model.train()
    if not detections:
        return dict(bbox_mAP=0.0, bbox_mAP_50=0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(detections), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return dict(bbox_mAP=float(coco_eval.stats[0]), bbox_mAP_50=float(coco_eval.stats[1]))


def run_hf(args, train_ann: Path, val_ann: Path) -> dict:
    """Train the HF reference in this process until the budget; rows of (epoch, minutes, AP)."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    train_set = CocoBoxes(train_ann, args.data / "images" / "train", train=True)
    val_set = CocoBoxes(val_ann, args.data / "images" / "val", train=False)
    cat_of = {label: cat for cat, label in val_set.label_of.items()}
    model = build_hf_model(len(cat_of), args.hf_backbone).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.hf_lr, weight_decay=1e-4)
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
            loss = model(**inputs).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 0.1)
            optimizer.step()
            iters += 1
            elapsed = time.perf_counter() - start
            if iters % 20 == 0:
                print(f"[hf] epoch {epoch} iter {iters} loss {loss.item():.3f} "
                      f"{elapsed / 60:.1f} min", flush=True)  # fmt: skip
            if elapsed >= budget_s:
                out_of_time = True
                break
        if out_of_time:  # a partial epoch is not evaluated (nor is ours)
            break
        metrics = evaluate_hf(model, val_loader, val_set.coco, cat_of)
        minutes = (time.perf_counter() - start) / 60
        print(f"[hf] epoch {epoch} val {metrics} at {minutes:.2f} min", flush=True)
        if minutes > args.minutes:  # the evaluation ended after the budget: not counted
            break
        rows.append(dict(epoch=epoch, minutes=minutes, **metrics))
    train_minutes = (time.perf_counter() - start) / 60
    return dict(
        rows=rows,
        stopped_at_budget=train_minutes >= args.minutes,
        iterations=iters,
        s_per_iter=train_minutes * 60 / iters if iters else None,  # evaluations included
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        backbone=args.hf_backbone,
        lr=args.hf_lr,
    )
