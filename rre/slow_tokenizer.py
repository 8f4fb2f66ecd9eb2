"""Starling's tokenizer loaded slow, as the paper's gold code loaded it (`use_fast=False`).

The paper tokenized Starling's inputs with transformers 4.35's slow `LlamaTokenizer`: the Yi-34B-Chat
sentencepiece model (`tokenizer.model`) run by the sentencepiece library, special tokens split off first.
transformers 5 has no slow Llama tokenizer; `AutoTokenizer` converts the sentencepiece model to a tokenizers
graph, and that graph splits many texts otherwise (on small sentencepiece models built like Yi's, 0 of the 2,000
validation inputs in most configurations, bench/slow_tokenizer_check.py). So the paper's path is rebuilt here on
transformers' sentencepiece backend, plus the one rule of 4.35's slow Llama class that backend lacks: with
`legacy: false` in tokenizer_config.json, a text is encoded with a word-start marker in front (dropped again when a
special token follows it). tests/test_slow_tokenizer.py pins the ids 4.35.2 gave.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers.tokenization_utils_sentencepiece import SentencePieceBackend


SENTENCEPIECE_FILE = "tokenizer.model"
WORD_START = "\u2581"  # sentencepiece's marker of a word start (a space before it)


class SlowLlamaTokenizer(SentencePieceBackend):
    """A Llama-family sentencepiece tokenizer that encodes as transformers 4.35's slow `LlamaTokenizer`."""

    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        if self.legacy or not text:
            return super().tokenize(text, **kwargs)
        pieces = super().tokenize(WORD_START + text.replace(WORD_START, " "), **kwargs)
        marker_before_special = len(pieces) > 1 and pieces[0] == WORD_START and pieces[1] in self.all_special_tokens
        return pieces[1:] if marker_before_special else pieces


def has_sentencepiece_model(name_or_path: str) -> bool:
    """A local tokenizer folder has a slow form only with its sentencepiece model; a hub name is taken to have
    one (Yi-34B-Chat does; a load without it fails in one line through the caller's load_errors)."""
    folder = Path(name_or_path)
    return not folder.is_dir() or (folder / SENTENCEPIECE_FILE).is_file()
