"""Prompts as text: captions made of class names, prompt parsing, and the left/right swap a
horizontal flip makes in a referring expression.

A grounding sample carries ``text`` (the caption the model reads), ``phrases`` (the
caption's entities: class names, or the expression itself) and ``phrase_spans`` (for each
phrase, its ``[start, end)`` character spans in ``text``, ODVG's ``tokens_positive``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["CLASS_SEPARATOR", "class_caption", "parse_prompt", "swap_left_right"]

#: Grounding DINO's separator of class names in one caption: "cat . remote control ."
CLASS_SEPARATOR = " . "

Spans = list[list[list[int]]]


def class_caption(names: Sequence[str]) -> tuple[str, Spans]:
    """Class names -> (caption ``"name1 . name2 ."``, one span ``[[start, end]]`` per name).

    Names are lower-cased and stripped; an empty name is refused.
    """
    caption, spans = "", []
    for i, name in enumerate(names):
        name = str(name).strip().lower()
        if not name:
            raise ValueError(f"class name {i} of {list(names)!r} is empty")
        if caption:
            caption += CLASS_SEPARATOR
        spans.append([[len(caption), len(caption) + len(name)]])
        caption += name
    return caption + " .", spans


def parse_prompt(text: str) -> tuple[str, list[str], Spans, str]:
    """A user's prompt -> ``(caption, phrases, spans, kind)``.

    ``"red circle . person ."`` (names separated / ended by ``.``) is a class prompt:
    ``kind='classes'``, one phrase per name. Anything else (``"the small triangle left of
    the blue square"``) is one expression: ``kind='expression'``, phrases ``[text]``.
    An empty prompt is refused.
    """
    stripped = " ".join(str(text).split())
    if not stripped.strip(". "):
        raise ValueError(f"empty prompt {text!r}: give class names ('cat . dog .') or a phrase")
    if "." in stripped:
        names = [n.strip() for n in stripped.split(".") if n.strip()]
        caption, spans = class_caption(names)
        return caption, [n.lower() for n in names], spans, "classes"
    caption = stripped.lower()
    return caption, [caption], [[[0, len(caption)]]], "expression"


_LEFT_RIGHT = re.compile(r"\b(left|right)\b")


def swap_left_right(text: str, spans: Spans) -> tuple[str, Spans]:
    """``text`` with the words "left" and "right" swapped, and ``spans`` moved to match
    (the two words differ in length, so every later character shifts)."""
    pieces, shifts, last = [], [], 0  # shifts: (position in the old text, cumulative shift)
    delta = 0
    for m in _LEFT_RIGHT.finditer(text):
        new = "right" if m.group(1) == "left" else "left"
        pieces += [text[last : m.start()], new]
        delta += len(new) - len(m.group(1))
        shifts.append((m.end(), delta))
        last = m.end()
    pieces.append(text[last:])

    def move(pos: int, is_end: bool) -> int:
        shift = 0
        for end, d in shifts:
            if end < pos or (end == pos and is_end):
                shift = d
        return pos + shift

    new_spans = [[[move(s, False), move(e, True)] for s, e in phrase] for phrase in spans]
    return "".join(pieces), new_spans
