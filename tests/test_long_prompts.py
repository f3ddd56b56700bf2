"""Prompts longer than 77 tokens: 75-token windows, each encoded with BOS / EOS, concatenated.

Reference: the same tiny random-init CLIPTextModel in PyTorch, fed the same windows built from
transformers' CLIPTokenizer ids; encodings agree to 1e-4 (float32 engines vs torch).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from edgegen import Pipeline  # noqa: E402
from edgegen.tokenizer import chunk_ids, num_chunks  # noqa: E402

# The tiny tokenizer's vocabulary is single bytes plus six merges: about one token per letter or punctuation mark.
LONG = "a red cat sits on the mat, " * 10         # 170 tokens: 3 windows
MEDIUM = "a blue dog runs in the park " * 5        # 95 tokens: 2 windows


def test_chunk_ids_windows_and_padding():
    ids = list(range(10, 10 + 160))
    out = chunk_ids(ids, 4, max_length=77, bos=1, eos=2, pad=0)
    assert out.shape == (4, 77) and out.dtype == np.int64
    assert out[0, 0] == 1 and out[0, 76] == 2 and list(out[0, 1:76]) == ids[:75]
    assert list(out[2, :12]) == [1, *ids[150:], 2] and (out[2, 12:] == 0).all()
    assert list(out[3, :3]) == [1, 2, 0]  # an empty window is an encoded empty prompt
    assert num_chunks([], 77) == 1 and num_chunks(ids[:75], 77) == 1 and num_chunks(ids[:76], 77) == 2
    with pytest.raises(ValueError, match="windows"):
        chunk_ids(ids, 2, max_length=77, bos=1, eos=2, pad=0)


def _reference(tiny_sd_dir, prompts, count):
    """(B, count * 77, hidden) float32: transformers' tokenizer + CLIPTextModel, window by window."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(tiny_sd_dir / "tokenizer"))
    model = CLIPTextModel.from_pretrained(str(tiny_sd_dir / "text_encoder")).float().eval()
    out = []
    for prompt in prompts:
        ids = tok(prompt, add_special_tokens=False).input_ids
        windows = [ids[i:i + 75] for i in range(0, max(len(ids), 1), 75)]
        windows += [[]] * (count - len(windows))
        rows = [[tok.bos_token_id, *w, tok.eos_token_id] + [tok.pad_token_id] * (75 - len(w)) for w in windows]
        with torch.no_grad():
            hidden = model(torch.tensor(rows)).last_hidden_state.numpy()
        out.append(hidden.reshape(-1, hidden.shape[-1]))
    return np.stack(out)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_long_prompt_conditioning_matches_torch(tiny_sd_dir, tiny_sd_artifact, backend):
    pipe = Pipeline.load(tiny_sd_artifact, backend=backend)
    prompts, negatives = [LONG, MEDIUM], ["blurry", ""]
    cond, uncond, info = pipe._text_condition(prompts, negatives, 2, 7.5)
    assert info["prompt_chunks"] == 3
    got, got_neg = cond["encoder_hidden_states"], uncond["encoder_hidden_states"]
    assert got.shape == got_neg.shape == (2, 3 * 77, 32) and got.dtype == np.float32
    # OpenVINO runs the IR with FP16-stored weights, accepted at export within 1e-4 + 1e-3 x peak
    # (measured 3.1e-3 here); a window encoded or joined wrongly is off by O(1).
    atol = 1e-4 if backend == "onnxruntime" else 5e-3
    np.testing.assert_allclose(got, _reference(tiny_sd_dir, prompts, 3), atol=atol, rtol=0)
    np.testing.assert_allclose(got_neg, _reference(tiny_sd_dir, negatives, 3), atol=atol, rtol=0)


def test_short_prompt_is_one_window_as_transformers_tokenizes_it(tiny_sd_artifact):
    pipe = Pipeline.load(tiny_sd_artifact, backend="onnxruntime")
    prompts = ["the cat", "", "x" * 75]
    np.testing.assert_array_equal(pipe.tokenizer.chunks(prompts)[:, 0], pipe.tokenizer(prompts))
    cond, uncond, info = pipe._text_condition(prompts, None, 3, 7.5)
    assert cond["encoder_hidden_states"].shape == (3, 77, 32) and "prompt_chunks" not in info


def test_long_prompt_makes_an_image(tiny_sd_artifact, tmp_path):
    pipe = Pipeline.load(tiny_sd_artifact, backend="onnxruntime")
    out = pipe(LONG, negative_prompt="ugly", num_inference_steps=2, height=32, width=32, num_images=2)
    assert out.images.shape == (2, 32, 32, 3) and np.isfinite(out.images).all()
    assert out.info["prompt_chunks"] == 3 and len(out.save(tmp_path)) == 2
    short = pipe(LONG[:60], num_inference_steps=2, height=32, width=32)
    assert not np.allclose(short.images[0], out.images[0])
