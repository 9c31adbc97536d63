"""Referring expressions that pick out exactly one object of an image.

Grammar: ``the [size] [colour] <category> [<relation> the [size] [colour] <category>]``,
e.g. "the circle", "the large green triangle", "the small red circle left of the
blue square". Relations compare visible boxes ``(x0, y0, x1, y1)`` (right/bottom
exclusive) through the referent's box centre ``(cx, cy)``:

    a "left of" b  <=>  cx_a < x0_b        a "right of" b  <=>  cx_a > x1_b
    a "above" b    <=>  cy_a < y0_b        a "below" b     <=>  cy_a > y1_b

Every expression is checked against all objects of its image by ``resolve`` before
it is kept: it must match the target and nothing else, and a relation's landmark
must itself be unambiguous without a relation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RELATIONS = ("left of", "right of", "above", "below")


@dataclass(frozen=True)
class Referent:
    """What an expression may mention about an object: its attributes and xyxy visible box."""

    category: str
    color: str
    size: str
    bbox: tuple[float, float, float, float]


@dataclass(frozen=True)
class Description:
    """A structured expression; ``landmark`` is set exactly when ``relation`` is."""

    category: str
    color: str | None = None
    size: str | None = None
    relation: str | None = None
    landmark: Description | None = None

    def words(self) -> list[str]:
        out = ["the"] + [w for w in (self.size, self.color) if w] + [self.category]
        if self.relation:
            out += self.relation.split() + self.landmark.words()
        return out

    def text(self) -> str:
        return " ".join(self.words())


def relation_holds(relation: str, a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether box ``a`` stands in ``relation`` to box ``b`` (both xyxy)."""
    cx, cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    if relation == "left of":
        return cx < b[0]
    if relation == "right of":
        return cx > b[2]
    if relation == "above":
        return cy < b[1]
    if relation == "below":
        return cy > b[3]
    raise ValueError(f"unknown relation {relation!r}; choose from {RELATIONS}")


def resolve(desc: Description, objects: Sequence[Referent]) -> list[int]:
    """Indices of the objects ``desc`` describes (empty if its landmark is ambiguous)."""
    hits = [
        i
        for i, o in enumerate(objects)
        if o.category == desc.category
        and desc.color in (None, o.color)
        and desc.size in (None, o.size)
    ]
    if desc.relation is None:
        return hits
    landmarks = resolve(desc.landmark, objects)
    if len(landmarks) != 1:
        return []
    lm = objects[landmarks[0]].bbox
    return [i for i in hits if relation_holds(desc.relation, objects[i].bbox, lm)]


def _plain_forms(o: Referent) -> list[Description]:
    """Relation-free descriptions of ``o``, shortest first (colour preferred over size)."""
    return [
        Description(o.category),
        Description(o.category, color=o.color),
        Description(o.category, size=o.size),
        Description(o.category, color=o.color, size=o.size),
    ]


def describe(objects: Sequence[Referent], index: int, max_sentences: int = 3) -> list[str]:
    """Up to ``max_sentences`` unambiguous expressions for ``objects[index]``.

    The shortest first; one relational expression is kept among them when there is
    one. Empty when no expression of the grammar singles the object out.
    """
    plain = [d for d in _plain_forms(objects[index]) if resolve(d, objects) == [index]]
    relational = []
    for j, other in enumerate(objects):
        if j == index:
            continue
        landmark = next((d for d in _plain_forms(other) if resolve(d, objects) == [j]), None)
        if landmark is None:
            continue
        for relation in RELATIONS:
            if not relation_holds(relation, objects[index].bbox, other.bbox):
                continue
            for base in _plain_forms(objects[index]):
                desc = Description(base.category, base.color, base.size, relation, landmark)
                if resolve(desc, objects) == [index]:
                    relational.append(desc)
                    break  # the shortest base for this landmark and relation
    ranked = sorted(plain + relational, key=lambda d: len(d.words()))  # stable
    chosen = ranked[:max_sentences]
    if relational and max_sentences > 1 and not any(d.relation for d in chosen):
        chosen[-1] = next(d for d in ranked if d.relation)  # keep one relational expression
    return [d.text() for d in chosen]


def referring_expressions(objects: Sequence[Referent], max_sentences: int = 3) -> list[list[str]]:
    """Unambiguous expressions for every object (an empty list where there is none)."""
    return [describe(objects, i, max_sentences) for i in range(len(objects))]
