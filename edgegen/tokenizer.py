"""CLIP tokenization with the ``tokenizers`` package (no transformers at run time).

The artifact carries ``tokenizer.json`` (a fast-tokenizer file written at export from the
model's CLIP tokenizer), the model's maximum length (77 for SD 1.x / 2.x) and its pad id
(``<|endoftext|>`` for SD 1.x, ``!`` for SD 2.x).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


class ClipTokenizer:
    """Encode prompts to (B, max_length) int64 ids: BOS, tokens, EOS, then padding.

    Matches ``CLIPTokenizer(prompt, padding="max_length", max_length=77, truncation=True)``:
    long prompts are truncated so that EOS is still the last real token.
    """

    def __init__(self, tokenizer_file: str | Path, *, max_length: int, pad_id: int):
        from tokenizers import Tokenizer

        self.max_length, self.pad_id = int(max_length), int(pad_id)
        self._tok = Tokenizer.from_file(str(tokenizer_file))
        self._tok.enable_truncation(self.max_length)
        self._tok.enable_padding(length=self.max_length, pad_id=self.pad_id)

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        encodings = self._tok.encode_batch(list(prompts))
        return np.asarray([e.ids for e in encodings], dtype=np.int64)
