"""What the grounding datasets share: class prompts within a token budget, and the
counting of malformed entries that ``on_error='skip'`` leaves out.

A grounding sample (see ``DataSample``) carries ``text``, ``phrases``, ``phrase_spans``,
``prompt_type`` and instances whose ``bbox_label`` indexes ``phrases``. Class prompts
(Grounding DINO's ``"circle . square ."``) are built per sample by
:class:`ClassPromptMixin`: in training the image's classes plus randomly drawn negative
classes, shuffled, as many as fit ``max_tokens``; at test time every class in dataset
order, so a phrase index equals the class index.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
from mmengine.logging import print_log

from visionfm.text import class_caption, load_tokenizer

__all__ = ["ClassPrompt", "ClassPromptMixin", "GroundingFormatError", "InvalidEntries"]


class GroundingFormatError(ValueError):
    """A grounding annotation entry that does not follow its format; names file and entry."""


class InvalidEntries:
    """``on_error`` for malformed entries of an annotation file: 'raise' raises the error,
    'skip' counts it (``count``) and keeps the first few messages for :meth:`report`."""

    def __init__(self, on_error: str, source: str) -> None:
        self.on_error = on_error
        self.source = source
        self.count = 0
        self.examples: list[str] = []

    def __call__(self, err: ValueError) -> None:
        if self.on_error == "raise":
            err.add_note("(on_error='skip' would leave this entry out, counted)")
            raise err
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(str(err))

    def report(self) -> None:
        if self.count:
            print_log(
                f"{self.source}: on_error='skip' left out {self.count} malformed entries. "
                f"First problems: " + " | ".join(self.examples),
                logger="current",
                level=logging.WARNING,
            )


class ClassPrompt:
    """Class-name captions over ``classes`` (their order is the class index).

    Args:
        classes: class names; class index i is ``classes[i]``.
        max_tokens: token budget of a training caption, special tokens included
            (``len(tokenizer(caption)["input_ids"])``).
        text_model: folder of the tokenizer (None: the default MiniLM, see
            :func:`visionfm.text.load_tokenizer`); loaded on the first training prompt.
    """

    def __init__(
        self, classes: Sequence[str], max_tokens: int = 256, text_model: str | None = None
    ) -> None:
        if not classes:
            raise ValueError("a class prompt needs at least one class name")
        self.classes = tuple(classes)
        self.max_tokens = int(max_tokens)
        self.text_model = None if text_model is None else os.fspath(text_model)
        self.num_dropped_classes = 0  # positive classes beyond the budget (their boxes too)
        self._tokenizer = None
        self._costs: list[int] | None = None

    def num_tokens(self, caption: str) -> int:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.text_model)
        return len(self._tokenizer(caption)["input_ids"])

    @staticmethod
    def prompt(classes: Sequence[str], class_ids: Sequence[int]) -> dict:
        """``text``, ``phrases``, ``phrase_spans``, ``phrase_ids`` of the classes
        ``class_ids`` in this order."""
        names = [classes[i] for i in class_ids]
        text, spans = class_caption(names)
        return dict(
            text=text,
            phrases=[n.strip().lower() for n in names],
            phrase_spans=spans,
            phrase_ids=[int(i) for i in class_ids],
        )

    def all_classes(self) -> dict:
        """The test-time prompt: every class in order (never truncated: a model chunks a
        caption longer than its text encoder takes)."""
        return self.prompt(self.classes, range(len(self.classes)))

    def sample(self, positives: Sequence[int], rng: np.random.RandomState = np.random) -> dict:
        """A training prompt: the ``positives`` (class indices present in the image) and then
        randomly drawn other classes, as many as fit ``max_tokens``, in random order."""
        if self._costs is None:  # tokens of each "name ." (exact for WordPiece, checked below)
            base = self.num_tokens("")
            self._costs = [self.num_tokens(class_caption([n])[0]) - base for n in self.classes]
        present = sorted(set(int(p) for p in positives))
        others = sorted(set(range(len(self.classes))) - set(present))
        order = list(rng.permutation(present)) + list(rng.permutation(others))
        chosen, used = [], self.num_tokens("")
        for c in order:
            if used + self._costs[c] <= self.max_tokens:
                chosen.append(c)
                used += self._costs[c]
        while (
            len(chosen) > 1
            and self.num_tokens(class_caption([self.classes[c] for c in chosen])[0])
            > self.max_tokens
        ):
            chosen.pop()  # a tokenizer whose pieces depend on their neighbours
        dropped = len(set(present) - set(chosen))
        if dropped:
            if not self.num_dropped_classes:
                print_log(
                    f"ClassPrompt: the classes of an image do not fit max_tokens="
                    f"{self.max_tokens}; {dropped} classes and their boxes left out (counted "
                    f"in num_dropped_classes, logged once)",
                    logger="current",
                    level=logging.WARNING,
                )
            self.num_dropped_classes += dropped
        return self.prompt(self.classes, list(rng.permutation(chosen)))

    def __repr__(self) -> str:
        return (
            f"ClassPrompt({len(self.classes)} classes, max_tokens={self.max_tokens}, "
            f"num_dropped_classes={self.num_dropped_classes})"
        )


class ClassPromptMixin:
    """Gives a dataset of class-labelled instances a class prompt per sample (see the
    module doc). Samples with ``prompt_type='expression'`` (free-text captions) pass as
    they are. The dataset sets ``max_tokens`` and ``text_model``; instance labels are
    mapped from class index to phrase index, and ``phrase_ids`` maps back."""

    max_tokens: int = 256
    text_model: str | None = None

    @property
    def class_prompt(self) -> ClassPrompt:
        if getattr(self, "_class_prompt", None) is None:
            self._class_prompt = ClassPrompt(
                self.metainfo["classes"], self.max_tokens, self.text_model
            )
        return self._class_prompt

    def prepare_data(self, idx: int):
        info = self.get_data_info(idx)
        if info.get("prompt_type", "classes") == "classes":
            self._prompt_classes(info)
        return self.pipeline(info)

    def _prompt_classes(self, info: dict) -> None:
        labels = [inst["bbox_label"] for inst in info["instances"]]
        if self.test_mode:
            prompt = self.class_prompt.all_classes()
        else:
            prompt = self.class_prompt.sample(labels)
        phrase_of = {c: i for i, c in enumerate(prompt["phrase_ids"])}
        info["instances"] = [
            dict(inst, bbox_label=phrase_of[inst["bbox_label"]])
            for inst in info["instances"]
            if inst["bbox_label"] in phrase_of
        ]
        info.update(prompt, prompt_type="classes")
