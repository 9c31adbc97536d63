"""Text for grounding: prompts, tokenisers and text encoders loaded from local folders."""

from .encoder import HFTextEncoder, TextFeatures
from .prompts import CLASS_SEPARATOR, class_caption, parse_prompt, swap_left_right
from .tokenizer import default_text_model, load_tokenizer, resolve_text_model
from .tokens import chunk_phrases, positive_map, sub_sentence_masks, token_spans_to_phrase

__all__ = [
    "CLASS_SEPARATOR",
    "HFTextEncoder",
    "TextFeatures",
    "chunk_phrases",
    "class_caption",
    "default_text_model",
    "load_tokenizer",
    "parse_prompt",
    "positive_map",
    "resolve_text_model",
    "sub_sentence_masks",
    "swap_left_right",
    "token_spans_to_phrase",
]
