"""The text encoder of Grounding DINO (Liu et al., 2023): a BERT from HF transformers, loaded
from a local folder, read in sub-sentence mode (each phrase attends only to itself), mapped to
the detector's width, and cached per caption tuple so that a prompt is encoded once across
the frames of a video.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from visionfm.registry import MODELS

from .tokenizer import load_tokenizer, resolve_text_model
from .tokens import sub_sentence_masks

__all__ = ["HFTextEncoder", "TextFeatures"]


@dataclass
class TextFeatures:
    """What the text encoder gives a grounding head. Cached features are shared between
    calls: do not modify them in place."""

    feats: Tensor  # (B, L, C) after the linear map to embed_dims
    mask: Tensor  # (B, L) bool, True = real token (specials included, padding False)
    position_ids: Tensor  # (B, L) long: restart in each phrase (sub-sentence), else arange
    self_attn_mask: Tensor  # (B, L, L) bool, True = may attend
    input_ids: Tensor  # (B, L) long
    offsets: list[list[tuple[int, int]]]  # per caption, per token: characters; (0, 0) specials
    captions: list[str]


#: Whole-detector folders whose config.json holds the text model's config (``text_config``)
#: and whose checkpoint holds its weights (loaded with the detector: ``load_from=FOLDER``).
_DETECTOR_TYPES = ("grounding-dino", "mm-grounding-dino")


def _load_model(folder: str) -> nn.Module:
    """The ``AutoModel`` saved in ``folder``, without a pooler where the class has one.

    A published Grounding DINO folder (``grounding-dino-tiny``) gives its text model built
    from ``text_config``, with initial weights: the detector's checkpoint fills them. Under
    ``torch.device("meta")`` (checking a config's structure) nothing is read either."""
    from transformers import AutoConfig, AutoModel
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    detector = config.model_type in _DETECTOR_TYPES
    if detector:
        config = config.text_config
    model_class = MODEL_MAPPING[type(config)]
    kwargs = {}
    if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        kwargs["add_pooling_layer"] = False
    if detector or torch.empty(0).device.type == "meta":  # meta: building the structure only
        return AutoModel.from_config(config, **kwargs)
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # not its load report: a pooler we leave out on purpose
    try:
        return AutoModel.from_pretrained(folder, local_files_only=True, **kwargs)
    finally:
        logging.set_verbosity(verbosity)


@MODELS.register_module()
class HFTextEncoder(nn.Module):
    """A BERT-like HF model (a ``save_pretrained`` folder; None: the offline MiniLM) encoding
    captions into ``(B, L, embed_dims)`` token features.

    Args:
        path: folder with the tokenizer and model (None: :func:`default_text_model`), or a
            published Grounding DINO folder (its text model's weights then come with the
            detector's checkpoint: ``load_from`` the same folder).
        embed_dims: output width (a trainable linear map); None keeps the model's width.
        max_tokens: longest caption in tokens, ``[CLS]`` / ``[SEP]`` included (Grounding
            DINO: 256); longer ones are refused (split class names with ``chunk_phrases``).
        frozen: the model's weights stay fixed and it runs in eval mode, without gradients.
        sub_sentence: each phrase between ``special_tokens`` attends only to itself and its
            position ids restart; otherwise the caption is read as one sentence. A caption
            without a separator (an expression) should end with ``.``: else, when it is the
            longest of its batch, each of its tokens attends only to itself (the rule of
            :func:`sub_sentence_masks`).
        special_tokens: the tokens that end a phrase in sub-sentence mode.
        cache_size: how many captions keep the model's output (0: none); a training run
            whose captions repeat every epoch can keep them all (the synthetic config: 8192).
    """

    def __init__(
        self,
        path: str | None = None,
        embed_dims: int | None = None,
        max_tokens: int = 256,
        frozen: bool = True,
        sub_sentence: bool = True,
        special_tokens: Sequence[str] = ("[CLS]", "[SEP]", ".", "?"),
        cache_size: int = 16,
    ):
        super().__init__()
        folder = resolve_text_model(path)
        self.tokenizer = load_tokenizer(folder)
        self.model = _load_model(folder)
        self.hidden_size = self.model.config.hidden_size
        self.embed_dims = self.hidden_size if embed_dims is None else embed_dims
        self.proj = nn.Identity() if embed_dims is None else nn.Linear(self.hidden_size, embed_dims)
        limit = getattr(self.model.config, "max_position_embeddings", max_tokens)
        if max_tokens > limit:
            raise ValueError(
                f"max_tokens={max_tokens} exceeds the {limit} positions of the model in {folder!r}"
            )
        self.max_tokens = max_tokens
        self.frozen = frozen
        self.sub_sentence = sub_sentence
        ids = self.tokenizer.convert_tokens_to_ids(list(special_tokens))
        unknown = [t for t, i in zip(special_tokens, ids) if i == self.tokenizer.unk_token_id]
        if unknown:
            raise ValueError(f"special tokens {unknown} are not in the vocabulary of {folder!r}")
        self.register_buffer("special_ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        if frozen:
            self.model.requires_grad_(False)
            self.model.eval()
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, Tensor] = OrderedDict()  # (caption, state) -> (n, H)

    # -- tokens --------------------------------------------------------------------------
    def count_tokens(self, caption: str) -> int:
        """The number of tokens of ``caption``, ``[CLS]`` and ``[SEP]`` included."""
        return len(self.tokenizer(caption)["input_ids"])

    def tokenize(self, captions: Sequence[str], truncate: bool = False) -> dict:
        """``captions`` -> ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, L) long
        tensors padded to the longest, and ``offsets`` (per caption, per token: characters).

        A caption longer than ``max_tokens`` is refused, or cut with ``truncate=True``.
        """
        if isinstance(captions, str) or not captions:
            raise ValueError(f"give a non-empty list of captions, not {captions!r}")
        enc = self.tokenizer(
            list(captions),
            padding="longest",
            truncation=truncate,
            max_length=self.max_tokens if truncate else None,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        for caption, count in zip(captions, enc["attention_mask"].sum(1).tolist()):
            if count > self.max_tokens:
                raise ValueError(
                    f"caption {caption!r} has {count} tokens, more than max_tokens="
                    f"{self.max_tokens}: split its class names into captions with "
                    "visionfm.text.chunk_phrases (or pass truncate=True to cut it)"
                )
        input_ids = enc["input_ids"]
        token_type_ids = enc.get("token_type_ids", torch.zeros_like(input_ids))
        return dict(
            input_ids=input_ids,
            attention_mask=enc["attention_mask"],
            token_type_ids=token_type_ids,
            offsets=[[tuple(o) for o in row] for row in enc["offset_mapping"].tolist()],
        )

    # -- encoding ------------------------------------------------------------------------
    def encode_ids(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Run the model on ``input_ids`` / ``attention_mask`` (B, L) (1 = real token; in
        sub-sentence mode the blocks of :func:`sub_sentence_masks` already leave padding out).

        Returns ``hidden (B, L, hidden_size)`` before the linear map, ``self_attn_mask
        (B, L, L)`` bool (True = may attend) and ``position_ids (B, L)``.

        In sub-sentence mode the model gets the mask as an additive float ``(B, 1, L, L)``:
        transformers 5 refuses a 3-D mask, and its eager attention adds a boolean 4-D mask to
        the scores (+1 / +0) instead of masking.
        """
        self_attn_mask, position_ids = self._masks(input_ids, attention_mask)
        if self.sub_sentence:
            dtype = self.model.dtype
            model_mask = torch.zeros(self_attn_mask.shape, dtype=dtype, device=input_ids.device)
            model_mask = model_mask.masked_fill(~self_attn_mask, torch.finfo(dtype).min)[:, None]
        else:
            model_mask = attention_mask
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hidden = self.model(
                input_ids=input_ids,
                attention_mask=model_mask,
                token_type_ids=token_type_ids,
                position_ids=position_ids if self.sub_sentence else None,
            ).last_hidden_state
        return hidden, self_attn_mask, position_ids

    def forward(self, captions: Sequence[str], truncate: bool = False) -> TextFeatures:
        """Encode ``captions`` (B of them) into :class:`TextFeatures`.

        The model's output is reused per caption while the weights are unchanged, when it
        can be: a frozen model's output has no graph and no dropout (so also in training:
        a caption seen in an earlier epoch is not encoded again); an unfrozen one's only in
        inference. A caption's real tokens do not depend on the batch's padding, so cached
        captions and newly encoded ones are padded into one batch."""
        tokens = self.tokenize(captions, truncate)
        ids = {k: v.to(self.special_ids.device) for k, v in tokens.items() if k != "offsets"}
        if self.cache_size and (self.frozen or not (self.training or torch.is_grad_enabled())):
            hidden = self._cached_hidden(captions, truncate, ids["attention_mask"])
            self_attn_mask, position_ids = self._masks(ids["input_ids"], ids["attention_mask"])
        else:
            hidden, self_attn_mask, position_ids = self.encode_ids(**ids)
        return TextFeatures(
            feats=self.proj(hidden),
            mask=ids["attention_mask"].bool(),
            position_ids=position_ids,
            self_attn_mask=self_attn_mask,
            input_ids=ids["input_ids"],
            offsets=tokens["offsets"],
            captions=list(captions),
        )

    def _cached_hidden(self, captions: Sequence[str], truncate: bool, attention_mask: Tensor):
        """(B, L, hidden) model outputs of ``captions`` from the cache, the missing ones
        encoded together first; padding positions are zeros."""
        state = (truncate, *self._weights_key())
        keys = [(caption, *state) for caption in captions]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            tokens = self.tokenize([k[0] for k in missing], truncate)
            ids = {k: v.to(self.special_ids.device) for k, v in tokens.items() if k != "offsets"}
            hidden = self.encode_ids(**ids)[0]
            for key, h, n in zip(missing, hidden, ids["attention_mask"].sum(1).tolist()):
                self._cache[key] = h[:n]
        out = attention_mask.new_zeros(
            (*attention_mask.shape, self.hidden_size), dtype=self.model.dtype
        )
        for i, key in enumerate(keys):
            self._cache.move_to_end(key)
            h = self._cache[key]
            out[i, : len(h)] = h
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def _masks(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The self-attention mask (B, L, L) and position ids (B, L) of ``encode_ids``."""
        if self.sub_sentence:
            return sub_sentence_masks(input_ids, self.special_ids)
        batch, length = input_ids.shape
        real = attention_mask.bool()
        position_ids = torch.arange(length, device=input_ids.device).expand(batch, length)
        return real[:, None, :].expand(batch, length, length), position_ids

    # -- cache and mode ------------------------------------------------------------------
    def _weights_key(self) -> tuple:
        """What the cached model outputs depend on besides the captions: device, dtype,
        autocast (bf16 features must not be reused without it), and the in-place versions of
        the model's weights (any optimizer step or copy bumps one)."""
        device = self.special_ids.device
        autocast = torch.is_autocast_enabled(device.type) and torch.get_autocast_dtype(device.type)
        versions = sum(p._version for p in self.model.parameters())
        return device, self.model.dtype, autocast, versions

    def clear_cache(self) -> None:
        self._cache.clear()

    def train(self, mode: bool = True) -> HFTextEncoder:
        """Set the mode; a frozen model stays in eval mode. Clears the cache."""
        super().train(mode)
        if self.frozen:
            self.model.eval()
        self.clear_cache()
        return self

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self.clear_cache()  # called for this module also when a parent loads a state dict
        super()._load_from_state_dict(*args, **kwargs)
