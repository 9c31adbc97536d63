"""Small helpers shared by the tests that hold our modules equal to a reference
implementation: random weights everywhere and a fixed random image batch, both float64.

Tests import it as ``from _helpers import ...`` (tests/ is on ``sys.path``, see
``_tiny_models.py``).
"""

from __future__ import annotations

import torch


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` with random weights everywhere, in float64 and eval mode.

    Default inits leave parts at zero or one (layer scale, relative position tables, Swin V2
    post-norms, class tokens, biases), where a wrong conversion would go unnoticed; these
    weights differ everywhere: N(0, 0.2) for matrices, N(0, 0.5) for vectors.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.2 if p.dim() > 1 else 0.5))
    return model.double().eval()


def randomize_frozen_bn(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """``model`` (in place) with random statistics and affine buffers in its frozen batch
    norms (HF's DETR-family ResNets keep them as buffers, which :func:`randomize` leaves):
    running variances U(0.5, 1.5), means / weights / biases N(0, 0.5), in their dtype."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen, dtype=b.dtype) + 0.5)
            elif name.endswith(("running_mean", ".bias", ".weight")):
                b.copy_(torch.randn(b.shape, generator=gen, dtype=b.dtype) * 0.5)
    return model


def image(h: int, w: int, batch: int = 2) -> torch.Tensor:
    """(batch, 3, h, w) float64 standard-normal pixels, the same on every call."""
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(1)).double()


# Words the tiny BERT of the text and grounding tests knows (bert-base-uncased's special ids).
TINY_BERT_WORDS = (
    "the a an of and to in on at is left right above below small large big red green blue "
    "yellow orange purple white black grey circle square triangle star ring cross shape "
    "person people cat dog car ball man woman object thing next with"
).split()


def write_tiny_bert(folder, hidden_size: int = 32, num_layers: int = 1, seed: int = 0):
    """Save a random BERT (2 heads) and its WordPiece tokenizer to ``folder``, as
    ``save_pretrained`` does; returns ``folder``.

    The vocabulary puts ``[PAD] [UNK] [CLS] [SEP] [MASK] . ?`` at bert-base-uncased's ids
    (0, 100, 101, 102, 103, 1012, 1029), as Grounding DINO's sub-sentence masks expect, and
    knows :data:`TINY_BERT_WORDS` plus the pieces ``##s`` and ``##ish``.
    """
    import os

    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = [f"[unused{i}]" for i in range(1100)]
    for i, token in ((0, "[PAD]"), (100, "[UNK]"), (101, "[CLS]"), (102, "[SEP]")):
        vocab[i] = token
    vocab[103], vocab[1012], vocab[1029] = "[MASK]", ".", "?"
    vocab += [*TINY_BERT_WORDS, "##s", "##ish"]
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "vocab.txt")
    with open(path, "w") as f:
        f.write("\n".join(vocab) + "\n")
    # vocab=, not vocab_file=: transformers 5 ignores vocab_file and maps every word to [UNK]
    BertTokenizerFast(vocab=path, do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=512,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


# The HF config arguments of the tiny DETR / Deformable DETR: a timm ResNet-18 (not
# pretrained) and a transformer of width 32, 1 encoder + 2 decoder layers, 4 heads.
TINY_DETR_ARGS = dict(
    use_timm_backbone=True,
    backbone="resnet18",
    use_pretrained_backbone=False,
    d_model=32,
    encoder_layers=1,
    decoder_layers=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=48,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
)
# ... and of the tiny Deformable DETR: 2 / 3 sampling points, 9 queries (9 two-stage proposals)
TINY_DEFORMABLE_DETR_ARGS = dict(
    TINY_DETR_ARGS, encoder_n_points=2, decoder_n_points=3, num_queries=9, two_stage_num_proposals=9
)


def write_tiny_deformable_detr(
    folder,
    num_labels: int = 5,
    two_stage: bool = False,
    random_weights: bool = True,
    size: tuple[int, int] = (96, 160),
    seed: int = 0,
    id2label: dict[int, str] | None = None,
):
    """A tiny HF Deformable DETR (timm resnet18, d_model 32, 9 queries) saved with
    ``save_pretrained`` into ``folder`` together with its image processor
    (``shortest_edge, longest_edge = size``); returns the HF model (float32, eval).

    ``random_weights``: every weight random (:func:`randomize`), so a wrong conversion shows;
    False: HF's initialisation (a model to fine-tune). ``id2label``: the class names of
    config.json (transformers' ``LABEL_i`` without)."""
    from transformers import (
        DeformableDetrConfig,
        DeformableDetrForObjectDetection,
        DeformableDetrImageProcessor,
    )

    torch.manual_seed(seed)
    config = DeformableDetrConfig(
        **TINY_DEFORMABLE_DETR_ARGS,
        num_labels=num_labels,
        **({} if id2label is None else dict(id2label=id2label)),
        with_box_refine=two_stage,
        two_stage=two_stage,
    )
    model = DeformableDetrForObjectDetection(config)
    if random_weights:
        model = randomize(model, seed)
    model = model.float().eval()
    model.save_pretrained(folder)
    processor = DeformableDetrImageProcessor(size=dict(shortest_edge=size[0], longest_edge=size[1]))
    processor.save_pretrained(folder)
    return model


def write_tiny_detr(folder, num_labels: int = 5, size: tuple[int, int] = (96, 160), seed: int = 0):
    """A tiny random HF DETR (timm resnet18, d_model 32, 12 queries) saved with
    ``save_pretrained`` into ``folder`` with its ``DetrImageProcessor`` (``shortest_edge,
    longest_edge = size``); returns the HF model (float32, eval)."""
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor

    config = DetrConfig(**TINY_DETR_ARGS, num_labels=num_labels, num_queries=12)
    model = randomize(DetrForObjectDetection(config), seed).float().eval()
    with torch.no_grad():  # the queries' decoder outputs differ little: spread their scores
        model.class_labels_classifier.weight.mul_(10.0)
    model.save_pretrained(folder)
    DetrImageProcessor(size=dict(shortest_edge=size[0], longest_edge=size[1])).save_pretrained(
        folder
    )
    return model
