"""CLIP tokenization with the ``tokenizers`` package (no transformers at run time).

The artifact carries ``tokenizer.json`` (a fast-tokenizer file written at export from the
model's CLIP tokenizer), the model's maximum length (77 for SD 1.x / 2.x) and its pad id
(``<|endoftext|>`` for SD 1.x, ``!`` for SD 2.x). Prompts longer than the maximum are split into
windows (:func:`chunk_ids`), never truncated by the pipelines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


class ClipTokenizer:
    """CLIP token ids for prompts: one truncated window (transformers' behaviour) or 75-token chunks.

    ``__call__`` matches ``CLIPTokenizer(prompt, padding="max_length", max_length=77, truncation=True)``;
    ``chunks`` never truncates (see :func:`chunk_ids`), and is what the pipelines use.
    """

    def __init__(self, tokenizer_file: str | Path, *, max_length: int, pad_id: int):
        from tokenizers import Tokenizer

        self.max_length, self.pad_id = int(max_length), int(pad_id)
        self._raw = Tokenizer.from_file(str(tokenizer_file))
        self._tok = Tokenizer.from_file(str(tokenizer_file))
        self._tok.enable_truncation(self.max_length)
        self._tok.enable_padding(length=self.max_length, pad_id=self.pad_id)
        self._raw.no_truncation()
        self._raw.no_padding()
        self.bos_id, self.eos_id = self._raw.encode("").ids  # the post-processor's <bos> <eos>

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        """(B, max_length) int64 ids: BOS, tokens, EOS, padding; long prompts truncated (EOS kept last)."""
        encodings = self._tok.encode_batch(list(prompts))
        return np.asarray([e.ids for e in encodings], dtype=np.int64)

    def token_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        """Each prompt's token ids, without BOS / EOS / padding and never truncated."""
        return [e.ids for e in self._raw.encode_batch(list(prompts), add_special_tokens=False)]

    def chunks(self, prompts: Sequence[str], *, min_chunks: int = 1) -> np.ndarray:
        """(B, C, max_length) int64 ids: every prompt in C windows of ``max_length - 2`` tokens.

        C is the largest chunk count among ``prompts`` and ``min_chunks`` (so that a batch, or a
        prompt and its negative, line up); see :func:`chunk_ids`.
        """
        ids = self.token_ids(prompts)
        count = max([min_chunks, *(num_chunks(t, self.max_length) for t in ids)])
        return np.stack([chunk_ids(t, count, max_length=self.max_length, bos=self.bos_id, eos=self.eos_id,
                                   pad=self.pad_id) for t in ids])

    def num_chunks(self, prompts: Sequence[str]) -> int:
        """The largest number of windows any of ``prompts`` needs (>= 1)."""
        return max(num_chunks(t, self.max_length) for t in self.token_ids(prompts))


def num_chunks(token_ids: Sequence[int], max_length: int) -> int:
    """Windows of ``max_length - 2`` tokens needed for ``token_ids`` (>= 1: the empty prompt is one)."""
    window = max_length - 2
    return max(1, -(-len(token_ids) // window))


def chunk_ids(token_ids: Sequence[int], count: int, *, max_length: int, bos: int, eos: int, pad: int) -> np.ndarray:
    """Split token ids into ``count`` windows of ``max_length - 2``, each ``BOS, tokens, EOS, pad...``.

    The A1111 / compel "BREAK-less" long-prompt scheme: windows past the prompt's end are encoded
    empty prompts (``BOS, EOS, pad...``), which pads a negative prompt to its positive's length.

    Args:
        token_ids: one prompt's ids without special tokens, any length.
        count: windows to return, at least :func:`num_chunks` of ``token_ids``.
    Returns:
        (count, max_length) int64 ids.
    Raises:
        ValueError: ``count`` is too small to hold ``token_ids`` (never a silent truncation).
    """
    window = max_length - 2
    if count < num_chunks(token_ids, max_length):
        raise ValueError(f"count: {len(token_ids)} tokens need {num_chunks(token_ids, max_length)} windows of "
                         f"{window}, got {count}")
    out = np.full((count, max_length), pad, dtype=np.int64)
    for i in range(count):
        part = list(token_ids[i * window:(i + 1) * window])
        out[i, :len(part) + 2] = [bos, *part, eos]
    return out


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
