"""The task model: backbone -> optional neck -> one head, or several heads on one backbone.

Every head is a :class:`~visionfm.heads.Head`: ``loss`` / ``predict`` / ``forward`` on the
neck's (or backbone's) ``{level: (B, C, H, W)}`` features. With a dict of heads, loss names
are prefixed by the head's name (``det.loss_cls``) and every head's ``predict`` writes into
the same samples (each its own fields: ``pred_instances``, ``pred_sem_seg``, ...), a head
that reads other heads' predictions (``needs_predictions``) after the heads that write them.

A prompted head (``needs_text``, e.g. grounding) gets the model's ``text_encoder`` as
``text_encoder=`` in its ``loss`` / ``predict`` / ``forward`` and encodes the samples'
prompts itself (it knows how: class names chunked to the token budget, free text).

Registered as ``TaskModel`` and, for detectors and for configs and checkpoints written
before the rename, as ``Detector``.
"""

from __future__ import annotations

from collections.abc import Mapping

from mmengine.model import BaseModel
from torch import Tensor, nn

from visionfm.data.batch import unlabelled_samples
from visionfm.data.data_sample import DataSample
from visionfm.data.preprocessor import DataPreprocessor
from visionfm.heads.base import Head
from visionfm.registry import MODELS

__all__ = ["TaskModel", "prediction_order"]


def prediction_order(heads: list[tuple[str, Head]]) -> list[tuple[str, Head]]:
    """``[(name, head)]`` in the order their ``predict`` runs: as given, except that a head
    comes after every other head that predicts a field it ``needs_predictions``."""

    def waits(head: Head, pending: list[tuple[str, Head]]) -> bool:
        needs = set(head.needs_predictions)
        return any(needs & set(other.predicts) for _, other in pending if other is not head)

    order, pending = [], list(heads)
    while pending:
        ready = next((entry for entry in pending if not waits(entry[1], pending)), None)
        if ready is None:
            names = [name for name, _ in pending]
            raise ValueError(f"heads {names} each need another one's predictions first")
        order.append(ready)
        pending.remove(ready)
    return order


def _check_head(name: str, head: nn.Module, features: nn.Module) -> None:
    """A :class:`Head` whose ``in_levels`` are among the ``out_channels`` levels of
    ``features`` (the neck or backbone), where it reports them."""
    label = f"head {name!r}" if name else "the head"
    if not isinstance(head, Head):
        raise TypeError(
            f"{label} is a {type(head).__name__}, not a visionfm.heads.Head: derive it from "
            "Head (or DenseHead) and declare what it needs"
        )
    levels = getattr(features, "out_channels", None)
    if not isinstance(levels, Mapping):  # a backbone / neck outside the backbone contract
        return
    missing = [k for k in head.in_levels or () if k not in levels]
    if missing:
        raise ValueError(
            f"{label} ({type(head).__name__}) reads feature levels {missing}, but the "
            f"{type(features).__name__} gives {list(levels)}"
        )


@MODELS.register_module(name="Detector")
@MODELS.register_module()
class TaskModel(BaseModel):
    """Backbone + optional neck + head(s); an mmengine ``BaseModel``.

    Args:
        backbone: images (B, 3, H, W) -> ``{level: (B, C, h, w)}``.
        head: a :class:`~visionfm.heads.Head`, or ``{name: head}`` for several heads
            sharing the features.
        neck: feature dict -> feature dict, or None.
        data_preprocessor: batches, normalises and pads the inputs; default
            ``DataPreprocessor()`` (ImageNet mean / std, no size divisor).
        text_encoder: prompts -> token features (``visionfm.text.HFTextEncoder``), for the
            heads that declare ``needs_text``; required by them, refused without them.

    Heads are checked at construction: each must be a ``Head``, and the levels it reads
    (``in_levels``) must be among the neck's (else the backbone's) ``out_channels``.

    Parts are initialised when they are built (and backbones load their pretrained weights
    then), so :meth:`init_weights` does nothing: mmengine's runner calls it after
    construction, and the default would re-initialise a loaded backbone.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: Head | Mapping[str, Head],
        neck: nn.Module | None = None,
        data_preprocessor: nn.Module | None = None,
        text_encoder: nn.Module | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor or DataPreprocessor())
        self.backbone = backbone
        self.neck = neck
        self.text_encoder = text_encoder
        if isinstance(head, nn.Module):
            self.head, self.heads = head, None
        else:
            self.head, self.heads = None, nn.ModuleDict(head)
        for name, part in self.named_heads():
            _check_head(name.rstrip("."), part, neck if neck is not None else backbone)
        self.heads_in_prediction_order()  # refuses heads waiting for each other
        prompted = [name.rstrip(".") or "head" for name, h in self.named_heads() if h.needs_text]
        if prompted and text_encoder is None:
            raise ValueError(
                f"{prompted} read text prompts (needs_text): give the model a text_encoder, "
                "e.g. text_encoder=dict(type='HFTextEncoder', embed_dims=...)"
            )
        if text_encoder is not None and not prompted:
            raise ValueError("text_encoder is given but no head reads text (needs_text)")

    def _inputs(self, head: Head) -> dict:
        """The keyword inputs ``head`` declares besides the features and samples."""
        return {"text_encoder": self.text_encoder} if head.needs_text else {}

    def init_weights(self) -> None:
        """No-op: every part initialised itself (and loaded its weights) when built."""

    def named_heads(self) -> list[tuple[str, Head]]:
        """``[(loss prefix, head)]``: ``[("", head)]`` or ``[("name.", head), ...]``."""
        if self.heads is None:
            return [("", self.head)]
        return [(f"{name}.", head) for name, head in self.heads.items()]

    def heads_in_prediction_order(self) -> list[Head]:
        """The heads in the order their ``predict`` runs (see :func:`prediction_order`)."""
        return [head for _, head in prediction_order(self.named_heads())]

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
                raw = head.loss(feats, data_samples, **self._inputs(head))
                losses.update({prefix + k: v for k, v in raw.items()})
            return losses
        if mode == "predict":
            for head in self.heads_in_prediction_order():
                data_samples = head.predict(feats, data_samples, **self._inputs(head))
            return data_samples
        if mode == "tensor":
            if self.heads is None:
                return self.head(feats, data_samples, **self._inputs(self.head))
            return {
                name: head(feats, data_samples, **self._inputs(head))
                for name, head in self.heads.items()
            }
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
