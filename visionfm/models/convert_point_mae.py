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


register_family(
    PublishedFamily(
        "point_mae_classifier",
        is_point_mae_classifier,
        convert_point_mae_checkpoint,
        point_mae_model_config,
    )
)
