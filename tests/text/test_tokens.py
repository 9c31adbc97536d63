"""Token helpers of Grounding DINO: sub-sentence masks held equal to HF transformers', positive
maps by hand, phrase decoding and class-name chunking."""

import pytest
import torch
from _helpers import TINY_BERT_WORDS, write_tiny_bert

from visionfm.text import (
    chunk_phrases,
    class_caption,
    load_tokenizer,
    positive_map,
    sub_sentence_masks,
    token_spans_to_phrase,
)

SPECIAL = [101, 102, 1012, 1029]  # [CLS] [SEP] . ?


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(write_tiny_bert(tmp_path_factory.mktemp("tiny_bert")))


def _offsets(tokenizer, caption):
    return [tuple(o) for o in tokenizer(caption, return_offsets_mapping=True)["offset_mapping"]]


def _hf_masks(input_ids):
    from transformers.models.grounding_dino.modeling_grounding_dino import (
        generate_masks_with_special_tokens_and_transfer_map,
    )

    return generate_masks_with_special_tokens_and_transfer_map(input_ids, torch.tensor(SPECIAL))


def test_sub_sentence_masks_by_hand():
    # [CLS] red circle . dog . [SEP] [PAD]
    ids = torch.tensor([[101, 7, 8, 1012, 9, 1012, 102, 0]])
    mask, pos = sub_sentence_masks(ids, SPECIAL)
    blocks = [[0], [1, 2, 3], [4, 5], [6], [7]]
    expected = torch.zeros(8, 8, dtype=torch.bool)
    for b in blocks:
        expected[b[0] : b[-1] + 1, b[0] : b[-1] + 1] = True
    assert torch.equal(mask[0], expected)
    assert pos[0].tolist() == [0, 0, 1, 2, 0, 1, 0, 0]


@pytest.mark.parametrize("seed", range(6))
def test_sub_sentence_masks_equal_hf(seed):
    """Random ids with padding, consecutive and leading/trailing specials, specials as a
    list or a tensor: mask and position ids exactly HF's."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.tensor([*SPECIAL, 0, 0, 5, 6, 7, 8])
    for _ in range(50):
        batch, length = (
            int(torch.randint(1, 4, (1,), generator=gen)),
            int(torch.randint(1, 16, (1,), generator=gen)),
        )
        ids = pool[torch.randint(len(pool), (batch, length), generator=gen)]
        if seed % 2:
            ids[:, 0] = 101
        pad = int(torch.randint(length, (1,), generator=gen))
        ids[0, length - pad :] = 0  # padding at the end of the first caption
        ids[-1, -1] = 102 if seed % 3 else ids[-1, -1]
        ref_mask, ref_pos = _hf_masks(ids)
        special = SPECIAL if seed % 2 else torch.tensor(SPECIAL)
        mask, pos = sub_sentence_masks(ids, special)
        assert mask.dtype == torch.bool and pos.dtype == torch.long
        assert torch.equal(mask, ref_mask), ids
        assert torch.equal(pos, ref_pos), ids


def test_positive_map_by_hand(tokenizer):
    caption = "red circles . person ."
    offsets = _offsets(tokenizer, caption)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(caption)["input_ids"])
    assert tokens == ["[CLS]", "red", "circle", "##s", ".", "person", ".", "[SEP]"]
    spans = [[[0, 11]], [[4, 11]], [[14, 20]], [[0, 3], [14, 20]]]
    got = positive_map(offsets, spans, num_tokens=10, caption=caption)
    expected = torch.zeros(4, 10, dtype=torch.bool)
    expected[0, 1:4] = True  # red circle ##s
    expected[1, 2:4] = True  # circle ##s
    expected[2, 5] = True  # person
    expected[3, [1, 5]] = True  # two spans
    assert torch.equal(got, expected)
    # GLIP's tolerance: an edge on a space moves inwards by up to 2 characters
    assert torch.equal(positive_map(offsets, [[[3, 12]]], 10, caption)[0], expected[1])


@pytest.mark.parametrize(
    "span, num_tokens, message",
    [
        ([17, 30], 8, "0 <= start < end"),  # past the caption's end
        ([-1, 3], 8, "0 <= start < end"),
        ([4, 4], 8, "0 <= start < end"),  # empty
        ([3, 7], 8, "covers no token"),  # spaces, no token within 2 characters
        ([17, 23], 5, "covers no token"),  # "person" lies past the 5 tokens kept
    ],
)
def test_positive_map_refuses(tokenizer, span, num_tokens, message):
    caption = "red    circles . person ."
    with pytest.raises(ValueError, match=message) as err:
        positive_map(_offsets(tokenizer, caption), [[span]], num_tokens, caption)
    assert repr(caption) in str(err.value) and f"[{span[0]}, {span[1]})" in str(err.value)


def test_token_spans_to_phrase(tokenizer):
    caption = "red circles . person ."  # [CLS] red circle ##s . person . [SEP]
    offsets = _offsets(tokenizer, caption)

    def phrase(indices):
        mask = torch.zeros(len(offsets), dtype=torch.bool)
        mask[indices] = True
        return token_spans_to_phrase(caption, offsets, mask)

    assert phrase([1, 2, 3]) == "red circles"
    assert phrase([0, 2, 3, 4, 7]) == "circles"  # specials and separators skipped
    assert phrase([1, 3, 5]) == "red s person"  # a piece without its word stands alone
    assert phrase([]) == ""


def _names(count):
    colours = TINY_BERT_WORDS[TINY_BERT_WORDS.index("red") : TINY_BERT_WORDS.index("grey") + 1]
    shapes = ["circle", "square", "triangle", "star", "ring", "cross", "dog", "car"]
    names = [f"{c} {s}" for c in colours for s in shapes] + [f"{c}ish" for c in colours]
    names += [f"small {n}" for n in names] + [f"large {n}s" for n in names]
    names += [f"the {n} on the left" for n in names]
    return names[::-1][:count]  # long names first


def test_chunk_phrases_300_names(tokenizer):
    names = _names(300)

    def count(caption):
        return len(tokenizer(caption)["input_ids"])

    chunks = chunk_phrases(names, count, max_tokens=64)
    assert len(chunks) > 5
    assert [i for _, _, indices in chunks for i in indices] == list(range(300))
    for k, (caption, spans, indices) in enumerate(chunks):
        assert (caption, spans) == class_caption([names[i] for i in indices])
        assert count(caption) <= 64
        if k + 1 < len(chunks):  # fewest chunks: the next name would not have fitted
            bigger = class_caption([names[i] for i in [*indices, indices[-1] + 1]])[0]
            assert count(bigger) > 64


def test_chunk_phrases_by_word_count():
    def count(caption):  # [CLS] + words and separators + [SEP]
        return len(caption.split()) + 2

    names = ["a", "b c", "d", "e f g", "h"]
    chunks = chunk_phrases(names, count, max_tokens=8)  # "d . e f g ." is 6 words
    assert [indices for _, _, indices in chunks] == [[0, 1], [2, 3], [4]]
    assert chunks[1][:2] == ("d . e f g .", [[[0, 1]], [[4, 9]]])
    with pytest.raises(ValueError, match="'one two three four five six'"):
        chunk_phrases(["a", "one two three four five six"], count, max_tokens=8)
    with pytest.raises(ValueError, match="no class names"):
        chunk_phrases([], count, max_tokens=7)
