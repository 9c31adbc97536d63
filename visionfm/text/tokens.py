"""Token-level helpers of Grounding DINO (Liu et al., 2023): sub-sentence attention masks,
positive maps from character spans to tokens, phrases decoded from tokens, and class names
split into captions that fit the text encoder.

Offsets are a tokenizer's ``offset_mapping`` for one caption: per token its ``(start, end)``
characters, ``(0, 0)`` for special and padding tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .prompts import class_caption

__all__ = ["chunk_phrases", "positive_map", "sub_sentence_masks", "token_spans_to_phrase"]

Offsets = Sequence[tuple[int, int]]


def sub_sentence_masks(
    input_ids: Tensor, special_ids: Tensor | Sequence[int]
) -> tuple[Tensor, Tensor]:
    """Grounding DINO's sub-sentence mode: each phrase attends only to itself.

    ``input_ids`` (B, L) is cut into blocks that each end at a special token (``[CLS]``,
    ``[SEP]``, ``.``, ``?``): ``"[CLS] | red circle . | person . | [SEP]"``. Tokens of a block
    attend to each other and their position ids restart at 0. A token whose block ends at
    position 0 or L - 1, or that has no special token after it (padding), attends only to
    itself with position id 0 — the rules of the original repository and of HF transformers'
    ``generate_masks_with_special_tokens_and_transfer_map``.

    Returns ``(mask (B, L, L) bool, True = may attend, position_ids (B, L) long)``.
    """
    special_ids = torch.as_tensor(special_ids, device=input_ids.device)
    length = input_ids.shape[1]
    special = torch.isin(input_ids, special_ids)  # (B, L)
    # block index of a token: the number of special tokens strictly before it
    block = special.long().cumsum(1) - special.long()  # (B, L)
    same = block[:, :, None] == block[:, None, :]  # (B, L, L)
    closed = block < special.sum(1, keepdim=True)  # a special token ends the block
    ends_last = block.eq(block[:, -1:]) & special[:, -1:]  # the block ends at L - 1
    valid = closed & ~ends_last  # (B, L); a block ending at 0 is token 0 alone anyway
    eye = torch.eye(length, dtype=torch.bool, device=input_ids.device)
    mask = eye | (same & valid[:, :, None])  # (B, L, L)
    # position in the block: how many earlier tokens share it
    earlier = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril(-1)
    position_ids = (same & earlier).sum(2).where(valid, 0)
    return mask, position_ids


def _token_at(offsets: Offsets, chars: Sequence[int]) -> int | None:
    """The index of the token covering the first of ``chars`` that a token covers, or None."""
    for char in chars:
        for j, (start, end) in enumerate(offsets):
            if start <= char < end:
                return j
    return None


def positive_map(
    offsets: Offsets,
    spans: Sequence[Sequence[Sequence[int]]],
    num_tokens: int,
    caption: str,
) -> Tensor:
    """Which tokens each phrase covers, GLIP style: ``(P, num_tokens)`` bool.

    ``spans[p]`` lists phrase p's ``[start, end)`` character spans in ``caption``; each
    marks the tokens from the one at ``start`` to the one at ``end - 1`` (word pieces
    included: "circles" -> ``circle``, ``##s``). As GLIP does, a span edge falling on a space
    moves inwards by up to 2 characters. Only the first ``num_tokens`` tokens count (the rest
    were cut). A span outside the caption, empty, or without a token is refused.
    """
    offsets = list(offsets)[:num_tokens]
    out = torch.zeros(len(spans), num_tokens, dtype=torch.bool)
    for p, phrase_spans in enumerate(spans):
        for start, end in phrase_spans:
            where = f"span [{start}, {end}) of phrase {p} in caption {caption!r}"
            if not 0 <= start < end <= len(caption):
                raise ValueError(f"{where}: spans must satisfy 0 <= start < end <= {len(caption)}")
            first = _token_at(offsets, (start, start + 1, start + 2))
            last = _token_at(offsets, (end - 1, end - 2, end - 3))
            if first is None or last is None or first > last:
                raise ValueError(
                    f"{where} ({caption[start:end]!r}) covers no token of the first "
                    f"{num_tokens}: it lies between tokens or past the tokens kept"
                )
            out[p, first : last + 1] = True
    return out


#: Tokens that separate phrases rather than belong to them.
_SEPARATORS = (".", "?")


def token_spans_to_phrase(caption: str, offsets: Offsets, token_mask: Tensor) -> str:
    """The phrase of the selected tokens, ``token_mask`` (L,) bool (e.g. logits above a
    threshold), read from ``caption``: word pieces are merged (a token starting where the
    previous selected one ended continues its word), words are joined by a space, and special
    tokens and the separators ``.`` / ``?`` are skipped."""
    words: list[str] = []
    previous_end = None
    for j in token_mask.nonzero().flatten().tolist():
        start, end = offsets[j]
        if start == end or caption[start:end] in _SEPARATORS:
            continue
        if start == previous_end:
            words[-1] += caption[start:end]
        else:
            words.append(caption[start:end])
        previous_end = end
    return " ".join(words)


def chunk_phrases(
    phrases: Sequence[str], count_tokens: Callable[[str], int], max_tokens: int
) -> list[tuple[str, list, list[int]]]:
    """Class names split into the fewest consecutive chunks whose caption fits.

    ``count_tokens(caption)`` counts a caption's tokens including ``[CLS]`` / ``[SEP]``.
    Returns per chunk ``(caption, spans, indices)``: the :func:`class_caption` of the chunk's
    names, their character spans in it, and the names' indices in ``phrases``. A single name
    too long for ``max_tokens`` is refused.
    """
    if not phrases:
        raise ValueError("no class names to put into captions")
    chunks: list[tuple[str, list, list[int]]] = []
    indices: list[int] = []
    for i, name in enumerate(phrases):
        caption, spans = class_caption([*(phrases[k] for k in indices), name])
        count = count_tokens(caption)
        if count > max_tokens and indices:  # close the chunk, start the next with this name
            chunks.append((*class_caption([phrases[k] for k in indices]), indices))
            indices = []
            caption, spans = class_caption([name])
            count = count_tokens(caption)
        if count > max_tokens:
            raise ValueError(
                f"class name {i} {name!r} alone takes {count} tokens as the caption "
                f"{caption!r}, more than max_tokens={max_tokens}: shorten it"
            )
        indices.append(i)
    chunks.append((*class_caption([phrases[k] for k in indices]), indices))
    return chunks
