"""The interface every task head implements: :class:`Head`, and :class:`DenseHead` for heads
whose output is a per-pixel map.

A task model (:class:`~visionfm.models.TaskModel`) runs backbone -> optional neck and hands
the features ``feats = {level: (B, C_l, H_l, W_l)}`` to each of its heads::

    head.loss(feats, data_samples) -> {loss name: scalar Tensor}       # mode='loss'
    head.predict(feats, data_samples) -> data_samples                  # mode='predict'
    head(feats, data_samples) -> the head's raw outputs                # mode='tensor'

``predict`` writes its fields (``predicts``) into the samples, in the ORIGINAL image's
coordinates, and returns them as a list. What a head needs besides ``feats`` it declares,
and the task model reads the declarations instead of probing the head:

- ``in_levels``: the feature levels it reads by name (None: not fixed by name, e.g. "the
  last level"); the model checks at construction that its backbone / neck provides them;
- ``needs_predictions``: sample fields that OTHER heads' ``predict`` writes and this head's
  ``predict`` reads (the RoI pose head reads a detection head's ``pred_instances``); the
  model runs the heads that write them first;
- ``needs_text``: the head reads the samples' prompts (``text``, ``phrases``); its
  ``loss`` / ``predict`` / ``forward`` also take ``text_encoder=``, the model's text encoder
  (a ``visionfm.text.HFTextEncoder``), which the model must have;
- ``flip_test``: ``predict`` also takes ``flip_feats``, the features of the horizontally
  mirrored inputs (top-down pose on unpadded crops);
- ``class_layers``: its tensors whose shape follows the number of classes (class heads, a
  denoising label embedding); fine-tuning from a checkpoint trained on other classes
  (``load_from``) re-initialises them, every other load refuses the difference naming
  ``num_classes`` (``visionfm.engine.checkpoint``);
- being a :class:`DenseHead`: its ``forward`` gives maps covering the padded input and
  ``predict_by_logits`` maps such maps to the samples, so the model may run sliding-window
  inference and hand it the stitched maps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from visionfm.data.data_sample import DataSample

__all__ = ["DenseHead", "Head"]


class Head(nn.Module):
    """Base of every task head (see the module doc).

    Subclasses implement ``forward``, :meth:`loss` and :meth:`predict`, and override the
    declarations that apply to them: ``predicts`` / ``needs_predictions`` / ``needs_text`` /
    ``class_layers`` (class attributes), ``flip_test`` (an attribute, often a constructor
    switch) and :attr:`in_levels` (a property, usually from the head's ``in_channels``).
    """

    #: DataSample fields ``predict`` writes (e.g. ``("pred_instances",)``).
    predicts: tuple[str, ...] = ()
    #: DataSample fields written by other heads that ``predict`` reads.
    needs_predictions: tuple[str, ...] = ()
    #: ``predict`` takes ``flip_feats=`` and wants the mirrored inputs' features.
    flip_test: bool = False
    #: ``loss`` / ``predict`` / ``forward`` take ``text_encoder=`` (prompted heads).
    needs_text: bool = False
    #: regexes of the state-dict names (relative to the head) whose shape follows
    #: ``num_classes``; none for a head without a fixed class set (prompted heads).
    class_layers: tuple[str, ...] = ()

    @property
    def in_levels(self) -> tuple[str, ...] | None:
        """Feature levels read by name; None: not fixed by name."""
        return None

    def loss(self, feats: Mapping[str, Tensor], data_samples: Sequence[DataSample]) -> dict:
        """feats ``{level: (B, C_l, H_l, W_l)}`` + the batch's samples with ground truth ->
        ``{loss name: scalar Tensor}`` (already weighted)."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss(feats, samples)")

    def predict(
        self, feats: Mapping[str, Tensor], data_samples: Sequence[DataSample], rescale: bool = True
    ) -> list[DataSample]:
        """feats -> the samples with this head's ``predicts`` fields filled, in original-image
        coordinates (``rescale=False``: network-input coordinates)."""
        raise NotImplementedError(f"{type(self).__name__} must implement predict(feats, samples)")


class DenseHead(Head):
    """A head whose ``forward(feats, data_samples)`` gives per-pixel maps (B, K, h, w) covering
    the whole padded batch input (any stride), turned into predictions by
    :meth:`predict_by_logits`; :meth:`predict` is one whole-input pass of the two."""

    @torch.no_grad()
    def predict(
        self, feats: Mapping[str, Tensor], data_samples: Sequence[DataSample], rescale: bool = True
    ) -> list[DataSample]:
        """Whole-input inference: ``predict_by_logits(self(feats, data_samples), ...)``."""
        return self.predict_by_logits(self(feats, data_samples), data_samples, rescale)

    def predict_by_logits(
        self, logits: Tensor, data_samples: Sequence[DataSample], rescale: bool = True
    ) -> list[DataSample]:
        """Maps (B, K, h, w) covering the padded batch input (one pass, or windows stitched
        by the task model) -> the samples with this head's fields filled."""
        raise NotImplementedError(f"{type(self).__name__} must implement predict_by_logits")
