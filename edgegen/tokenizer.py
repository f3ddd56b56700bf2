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


def clip_tokenizer_from_bpe(vocab: dict[str, int], merges: Sequence[tuple[str, str]], *, bos: str, eos: str,
                            unk: str):
    """A ``tokenizers.Tokenizer`` for CLIP built from its BPE vocabulary and merges.

    For checkpoints that ship CLIP's ``vocab.json`` / ``merges.txt`` but no ``tokenizer.json``
    (SD 1.x repositories, optimum exports made with transformers 4.x). The pipeline matches
    transformers 5's ``CLIPTokenizer`` (and 4.x's CLIP slow-to-fast converter): NFC, whitespace
    runs to one space, lowercase; CLIP's split pattern, byte-level BPE with ``</w>`` word ends;
    ``bos`` ... ``eos`` around every sequence.

    Raises:
        KeyError: ``bos`` or ``eos`` is not in ``vocab``.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE

    tok = Tokenizer(BPE(vocab=dict(vocab), merges=[tuple(m) for m in merges], dropout=None, continuing_subword_prefix="",
                        end_of_word_suffix="</w>", fuse_unk=False, unk_token=unk))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                                   r"""[^\s\p{L}\p{N}]+"""), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing((eos, vocab[eos]), (bos, vocab[bos]), trim_offsets=False,
                                                      add_prefix_space=False)
    tok.add_special_tokens([AddedToken(t, normalized=True, special=True) for t in dict.fromkeys((bos, eos, unk))])
    return tok
