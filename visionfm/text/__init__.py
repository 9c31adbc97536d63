"""Text for grounding: prompts, tokenisers and text encoders loaded from local folders."""

from .prompts import CLASS_SEPARATOR, class_caption, parse_prompt, swap_left_right
from .tokenizer import default_text_model, load_tokenizer, resolve_text_model

__all__ = [
    "CLASS_SEPARATOR",
    "class_caption",
    "default_text_model",
    "load_tokenizer",
    "parse_prompt",
    "resolve_text_model",
    "swap_left_right",
]
