"""The task model: backbone -> optional neck -> one head, or several heads on one backbone.

Each head implements::

    loss(feats: dict[str, Tensor], data_samples) -> dict[str, Tensor]
    predict(feats, data_samples, rescale=True) -> list[DataSample]  # fills its own fields
    forward(feats, data_samples) -> raw outputs                     # mode='tensor'

where ``feats`` is the neck's (or backbone's) ``{level: (B, C, H, W)}`` dict. With a dict of
heads, loss names are prefixed by the head's name (``det.loss_cls``) and every head's
``predict`` writes into the same samples (each its own field: ``pred_instances``,
``pred_sem_seg``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping

from mmengine.model import BaseModel
from torch import Tensor, nn

from visionfm.data.batch import unlabelled_samples
from visionfm.data.data_sample import DataSample
from visionfm.data.preprocessor import DataPreprocessor
from visionfm.registry import MODELS

__all__ = ["Detector"]


@MODELS.register_module()
class Detector(BaseModel):
    """Backbone + optional neck + head(s); an mmengine ``BaseModel``.

    Args:
        backbone: images (B, 3, H, W) -> ``{level: (B, C, h, w)}``.
        head: a head, or ``{name: head}`` for several heads sharing the features.
        neck: feature dict -> feature dict, or None.
        data_preprocessor: batches, normalises and pads the inputs; default
            ``DataPreprocessor()`` (ImageNet mean / std, no size divisor).

    Parts are initialised when they are built (and backbones load their pretrained weights
    then), so :meth:`init_weights` does nothing: mmengine's runner calls it after
    construction, and the default would re-initialise a loaded backbone.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module | Mapping[str, nn.Module],
        neck: nn.Module | None = None,
        data_preprocessor: nn.Module | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor or DataPreprocessor())
        self.backbone = backbone
        self.neck = neck
        if isinstance(head, nn.Module):
            self.head, self.heads = head, None
        else:
            # TODO(lead): MODELS.build leaves a plain dict of head configs unbuilt; build its
            # entries here until the registry recurses into plain dicts.
            built = {k: MODELS.build(v) if isinstance(v, Mapping) else v for k, v in head.items()}
            self.head, self.heads = None, nn.ModuleDict(built)

    def init_weights(self) -> None:
        """No-op: every part initialised itself (and loaded its weights) when built."""

    def named_heads(self) -> list[tuple[str, nn.Module]]:
        """``[(loss prefix, head)]``: ``[("", head)]`` or ``[("name.", head), ...]``."""
        if self.heads is None:
            return [("", self.head)]
        return [(f"{name}.", head) for name, head in self.heads.items()]

    def extract_feat(self, inputs: Tensor) -> dict[str, Tensor]:
        """(B, 3, H, W) -> the neck's (or backbone's) ``{level: (B, C, h, w)}``."""
        feats = self.backbone(inputs)
        return self.neck(feats) if self.neck is not None else feats

    def forward(
        self,
        inputs: Tensor,
        data_samples: list[DataSample] | None = None,
        mode: str = "tensor",
    ):
        """inputs: (B, 3, H, W) from the data preprocessor.

        ``mode='loss'``: dict of losses; ``'predict'``: the samples with predictions in
        original-image coordinates; ``'tensor'``: the head's raw outputs (a dict by head name
        for several heads).
        """
        if data_samples is None:
            data_samples = unlabelled_samples(inputs)
        feats = self.extract_feat(inputs)
        if mode == "loss":
            losses: dict[str, Tensor] = {}
            for prefix, head in self.named_heads():
                losses.update({prefix + k: v for k, v in head.loss(feats, data_samples).items()})
            return losses
        if mode == "predict":
            for _, head in self.named_heads():
                data_samples = head.predict(feats, data_samples)
            return data_samples
        if mode == "tensor":
            if self.heads is None:
                return self.head(feats, data_samples)
            return {name: head(feats, data_samples) for name, head in self.heads.items()}
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
