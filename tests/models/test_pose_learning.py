"""A tiny ViTPose overfits a few synthetic person crops: dataset -> transforms -> model ->
flip-tested predictions in original pixels -> keypoint AP."""

from __future__ import annotations

import pytest
import torch
from mmengine.dataset import pseudo_collate

from visionfm.registry import DATASETS, METRICS, MODELS

INPUT_SIZE = (48, 64)  # (w, h)


@pytest.mark.slow  # about 10 s on one free core (AP about 0.68, loss / 400)
def test_tiny_vitpose_overfits_synthetic_persons(synthetic_root):
    torch.manual_seed(0)
    ann_file = str(synthetic_root / "annotations" / "instances_train.json")
    pipeline = [
        dict(type="LoadImage"),
        dict(type="LoadAnnotations", with_keypoints=True),
        dict(type="GetBBoxCenterScale"),
        dict(type="TopDownAffine", input_size=INPUT_SIZE),
        dict(type="PackPoseInputs"),
    ]
    dataset = DATASETS.build(
        dict(
            type="CocoKeypointDataset",
            ann_file=ann_file,
            data_prefix=dict(img=str(synthetic_root / "images" / "train")),
            pipeline=pipeline,
        )
    )
    items = [dataset[i] for i in range(len(dataset))]  # every person of the 12 images
    assert 4 <= len(items) <= 24
    model = MODELS.build(
        dict(
            type="TopDownPoseEstimator",
            backbone=dict(
                type="ViT", img_size=(64, 48), patch_size=8, embed_dim=64, depth=2, num_heads=2,
                class_token=False, embed_layer="conv",
            ),
            head=dict(
                type="TopDownHeatmapHead",
                decoder=dict(
                    type="ClassicDecoder", in_channels=64, out_channels=17,
                    deconv_channels=(32,), deconv_kernels=(4,),
                ),
                sigma=1.0,
            ),
        )
    )  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(150):
        data = model.data_preprocessor(pseudo_collate(items), True)
        loss = model(**data, mode="loss")["loss_kpt"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::25]

    model.eval()
    with torch.no_grad():
        preds = model.test_step(pseudo_collate(items))
    metric = METRICS.build(dict(type="CocoKeypointMetric", ann_file=ann_file, img_ids="processed"))
    metric.dataset_meta = dataset.metainfo
    metric.process({}, [p.to_dict() for p in preds])
    ap = metric.compute_metrics(metric.results)["kpt_AP"]
    assert ap > 0.5, ap
