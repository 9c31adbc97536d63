"""Published Point-MAE / Point-BERT fine-tuned classifiers -> our ``PointModel``
(:class:`~visionfm.backbones.PointPatchTransformer` + :class:`~visionfm.heads.point.PointClsHead`).

The released fine-tuning files (Point-MAE ``modelnet_1k.pth``, ``scan_hardest.pth`` ...;
Point-BERT's ``ModelNet_1k.pth`` ...) are torch-saved ``{'base_model': state, ...}``
(sometimes with DataParallel's ``module.`` prefix), the state of their ``PointTransformer``:

=====================================================  =====================================
theirs                                                 ours
=====================================================  =====================================
``encoder.*``, ``reduce_dim.*`` (Point-BERT),          ``backbone.*``
``pos_embed.*``, ``cls_token``, ``cls_pos``,           (``PointPatchTransformer.
``blocks.blocks.{i}.*``, ``norm.*``                    convert_checkpoint``)
``cls_head_finetune.{4j, 4j + 1}`` (Linear, BN of      ``head.mlp.{4j, 4j + 1}``
hidden layer j)
``cls_head_finetune.{4H}`` (the last Linear)           ``head.fc_cls``
=====================================================  =====================================

The architecture comes from the tensors (:func:`point_mae_model_config`): width, depth, the
tokenizer projection, the classifier's hidden widths and classes; the number of heads is
not in them (Point-MAE / Point-BERT use 6), nor the grouping (their ModelNet40 recipe: 64
groups of 32 points; ScanObjectNN's 128 groups: set ``num_groups``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from visionfm.backbones.point_patch import PointPatchTransformer
from visionfm.models.published import PublishedFamily, register_family
from visionfm.weights import CheckpointError, ConvertedCheckpoint

__all__ = ["convert_point_mae_checkpoint", "is_point_mae_classifier", "point_mae_model_config"]

_HEAD = "cls_head_finetune."


def _strip(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module.").removeprefix("base_model."): v for k, v in state.items()}


def is_point_mae_classifier(state: Mapping[str, torch.Tensor], config: Mapping | None) -> bool:
    """A fine-tuned Point-MAE / Point-BERT classifier: ``cls_head_finetune.*`` beside the
    ``blocks.blocks.*`` encoder, no ``config.json``."""
    keys = _strip(state)
    return (
        config is None
        and any(k.startswith(_HEAD) for k in keys)
        and any(k.startswith("blocks.blocks.") for k in keys)
    )


def _head_linears(state: Mapping[str, torch.Tensor]) -> list[int]:
    """Indices of the classifier's Linear layers (2-D weights), in order."""
    found = {
        int(m.group(1))
        for k, v in state.items()
        if (m := re.fullmatch(r"cls_head_finetune\.(\d+)\.weight", k)) and v.dim() == 2
    }
    return sorted(found)


def convert_point_mae_checkpoint(
    state: Mapping[str, torch.Tensor], model: torch.nn.Module, config: Mapping | None = None
) -> ConvertedCheckpoint:
    """``state`` (see the module doc) -> ``model``'s names; ``model`` a ``PointModel`` with a
    ``PointPatchTransformer`` backbone and a ``PointClsHead`` of as many hidden layers."""
    backbone, head = getattr(model, "backbone", None), getattr(model, "head", None)
    if not isinstance(backbone, PointPatchTransformer) or head is None or not hasattr(head, "mlp"):
        raise CheckpointError(
            "a Point-MAE / Point-BERT classifier checkpoint loads into a PointModel with a "
            "PointPatchTransformer backbone and a PointClsHead (point_mae_model_config builds "
            f"one), not into {type(model).__name__}"
        )
    state = _strip(state)
    linears = _head_linears(state)
    hidden = len(head.mlp) // 4
    if linears != [4 * j for j in range(hidden + 1)]:
        raise CheckpointError(
            f"the checkpoint's classifier has Linear layers at cls_head_finetune.{linears}, "
            f"the model's PointClsHead has {hidden} hidden layers: set the head's hidden_dims "
            f"to {[int(state[f'{_HEAD}{i}.weight'].shape[0]) for i in linears[:-1]]}"
        )
    converted = backbone.convert_checkpoint(
        {k: v for k, v in state.items() if not k.startswith(_HEAD)}
    )
    out = {f"backbone.{k}": v for k, v in converted.state_dict.items()}
    last = 4 * hidden
    for key, value in state.items():
        if key.startswith(_HEAD):
            index, param = key[len(_HEAD) :].split(".", 1)
            target = "fc_cls" if int(index) == last else f"mlp.{index}"
            out[f"head.{target}.{param}"] = value
    return ConvertedCheckpoint(
        out, "point_mae_classifier", ignored=converted.ignored, notes=converted.notes,
        hints=converted.hints,
    )  # fmt: skip


def point_mae_model_config(state: Mapping[str, torch.Tensor], config: Mapping | None) -> dict:
    """Our ``model=`` dict for the checkpoint (sizes from the tensors; see the module doc)."""
    state = _strip(state)
    dim = int(state["norm.weight"].shape[0])
    depth = len({k.split(".")[2] for k in state if k.startswith("blocks.blocks.")})
    backbone = dict(
        type="PointPatchTransformer", num_groups=64, group_size=32, embed_dim=dim, depth=depth,
        num_heads=6, class_token="cls_token" in state,
    )  # fmt: skip
    if "reduce_dim.weight" in state:
        backbone["tokenizer_dim"] = int(state["reduce_dim.weight"].shape[1])
    linears = _head_linears(state)
    weights = [state[f"{_HEAD}{i}.weight"] for i in linears]
    head = dict(
        type="PointClsHead",
        num_classes=int(weights[-1].shape[0]),
        in_channels=int(weights[0].shape[1]),
        hidden_dims=tuple(int(w.shape[0]) for w in weights[:-1]),
    )
    return dict(
        type="PointModel",
        backbone=backbone,
        head=head,
        data_preprocessor=dict(type="PointDataPreprocessor"),
    )


# modelnet40_shape_names.txt, in label order
MODELNET40_CLASSES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard",
    "lamp", "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio",
    "range_hood", "sink", "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase",
    "wardrobe", "xbox",
)  # fmt: skip
# ScanObjectNN's 15 classes, in label order
SCANOBJECTNN_CLASSES = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed",
    "pillow", "sink", "sofa", "toilet",
)  # fmt: skip


def point_mae_data_config(model: Mapping, data_root: str | None) -> dict:
    """The test data of the classifier's benchmark, by its class count: ModelNet40 (1024
    points by farthest point sampling, normalised to the unit sphere, as Point-MAE evaluates)
    for 40 classes, ScanObjectNN's hardest split (PB_T50_RS, 2048 points as stored) for 15;
    other counts are refused, naming ``--config``."""
    num_classes = model["head"]["num_classes"]
    if num_classes == len(MODELNET40_CLASSES):
        classes, root = MODELNET40_CLASSES, data_root or "data/modelnet40_normal_resampled/"
        pipeline = [dict(type="NormalizeCoord"), dict(type="PackPointInputs")]
        dataset = dict(type="ModelNetDataset", split="test", num_points=1024)
    elif num_classes == len(SCANOBJECTNN_CLASSES):
        classes, root = SCANOBJECTNN_CLASSES, data_root or "data/ScanObjectNN/h5_files/main_split/"
        pipeline = [dict(type="PackPointInputs")]
        dataset = dict(
            type="ScanObjectNNDataset",
            ann_file="test_objectdataset_augmentedrot_scale75.h5",
            num_classes=num_classes,
        )
    else:
        raise CheckpointError(
            f"a Point-MAE classifier of {num_classes} classes is neither ModelNet40's (40) nor "
            "ScanObjectNN's (15): pass --config with a config of its data"
        )
    if dataset["type"] == "ScanObjectNNDataset":  # ModelNet40's names come from its files
        dataset["metainfo"] = dict(classes=classes)
    dataset.update(data_root=root, test_mode=True, pipeline=pipeline)
    return dict(
        metainfo=dict(classes=classes),
        data_root=root,
        test_pipeline=pipeline,
        test_dataloader=dict(
            batch_size=32,
            num_workers=2,
            drop_last=False,
            sampler=dict(type="DefaultSampler", shuffle=False),
            dataset=dataset,
        ),
        test_evaluator=dict(type="PointClsMetric"),
        test_cfg=dict(type="TestLoop"),
    )


register_family(
    PublishedFamily(
        "point_mae_classifier",
        is_point_mae_classifier,
        convert_point_mae_checkpoint,
        point_mae_model_config,
        data_config=point_mae_data_config,
    )
)
