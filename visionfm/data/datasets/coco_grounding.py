"""Open-vocabulary detection on any COCO json: class names as the text prompt (Grounding
DINO's "circle . square . triangle .").

Training samples get the image's classes plus randomly drawn negative class names within
``max_tokens`` tokens, in random order; test samples every class in dataset order, so a
predicted phrase index is the class index and ``CocoMetric`` evaluates the predictions
as they are (it also maps them through the samples' ``phrase_ids``). See
:mod:`~visionfm.data.datasets.grounding`.

Config::

    dataset=dict(type='CocoGroundingDataset', data_root='data/synthetic/',
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='images/val/'),
                 test_mode=True, pipeline=[...])
"""

from __future__ import annotations

from visionfm.registry import DATASETS

from .coco import CocoDataset
from .grounding import ClassPromptMixin

__all__ = ["CocoGroundingDataset"]


@DATASETS.register_module()
class CocoGroundingDataset(ClassPromptMixin, CocoDataset):
    """:class:`CocoDataset` whose samples carry a class prompt (``text``, ``phrases``,
    ``phrase_spans``, ``prompt_type='classes'``, ``phrase_ids``); ``bbox_label`` indexes
    ``phrases``.

    Args:
        max_tokens: token budget of a training prompt (special tokens included).
        text_model: tokenizer folder for the budget (None: the default MiniLM).
        **coco_args: :class:`CocoDataset`'s (``ann_file``, ``pipeline``, ``data_prefix``,
            ``on_error``, ``metainfo`` ...).
    """

    def __init__(self, *, max_tokens: int = 256, text_model: str | None = None, **coco_args):
        self.max_tokens = max_tokens
        self.text_model = text_model
        super().__init__(**coco_args)
