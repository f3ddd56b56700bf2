"""Random-init Stable Diffusion pipelines built locally (no downloads), in three sizes.

Used by tests (``tiny``, the ``tiny_sd_dir`` fixture), the ``sd_small`` benchmark (``small``,
~50M-param U-Net) and the ``sd15_size`` benchmark (``sd15``: the SD 1.5 architecture at full
size, 860M-param U-Net); benchmarks import it from here (``benchmarks/common.py`` puts
``tests/`` on ``sys.path``). Their images are noise: the weights are random. They exist to
exercise export, runtime and speed on the real architecture. Needs torch, diffusers and
transformers (the export extra); not part of the edgegen package.
"""

from __future__ import annotations

from pathlib import Path

import torch

PRESETS = {
    # diffusers' own test-suite sizes.
    "tiny": dict(unet=dict(block_out_channels=(32, 64), layers_per_block=2, sample_size=16,
                           down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                           up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                           attention_head_dim=8, norm_num_groups=32),
                 vae=dict(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                          up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32, norm_num_groups=32),
                 text=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5)),
    "small": dict(unet=dict(block_out_channels=(128, 256, 512), layers_per_block=1, sample_size=32,
                            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                            cross_attention_dim=512, attention_head_dim=8),
                  vae=dict(block_out_channels=(64, 128, 256, 256), down_block_types=("DownEncoderBlock2D",) * 4,
                           up_block_types=("UpDecoderBlock2D",) * 4, sample_size=256, layers_per_block=1),
                  text=dict(hidden_size=512, intermediate_size=2048, num_attention_heads=8, num_hidden_layers=6)),
    "sd15": dict(unet=dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, sample_size=64,
                           cross_attention_dim=768, attention_head_dim=8),
                 vae=dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                          up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512, layers_per_block=2),
                 text=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12)),
}


def _byte_vocab() -> tuple[dict[str, int], list[str]]:
    """A CLIP-format vocabulary of single bytes (GPT-2's byte-to-unicode table) and a few merges."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = [chr(c) for c in cs]
    tokens = chars + [c + "</w>" for c in chars]
    merges = ["t h", "th e</w>", "a n", "i n", "o n</w>", "e r"]
    for merge in merges:
        tokens.append(merge.replace(" ", ""))
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}, merges


def build_random_sd(out: str | Path, preset: str = "tiny", seed: int = 0, *, lcm: bool = False) -> Path:
    """Save a random-init diffusers StableDiffusionPipeline directory at ``out``.

    The scheduler is DDIM with SD 1.5's schedule (scaled_linear 0.00085..0.012, steps_offset 1,
    set_alpha_to_one false, clip_sample false). With ``lcm`` it is an LCM-distilled pipeline as
    ``SimianLuo/LCM_Dreamshaper_v7`` is laid out: a LatentConsistencyModelPipeline whose U-Net has
    ``time_cond_proj_dim=256`` (guidance as the ``timestep_cond`` input) and whose scheduler is
    LCMScheduler with that checkpoint's config. Returns ``out``.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from edgegen.export.diffusers import quiet_hugging_face

    quiet_hugging_face()
    cfg = PRESETS[preset]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, **cfg["unet"], time_cond_proj_dim=256 if lcm else None)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, **cfg["vae"])
    vocab, merges = _byte_vocab()
    # transformers >= 5 takes the vocabulary and merges themselves (not file paths).
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split()) for m in merges], model_max_length=77)
    text_vocab = 49408 if preset == "sd15" else 1000
    text = CLIPTextModel(CLIPTextConfig(vocab_size=text_vocab, max_position_embeddings=77, layer_norm_eps=1e-5,
                                        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                                        pad_token_id=vocab["<|endoftext|>"], **cfg["text"]))
    return save_sd_pipeline(out, unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer, lcm=lcm)


# AutoencoderTiny sizes whose upscale (2 ** (blocks - 1)) matches each preset's VAE: "tiny" 2x, others 8x
# (TAESD's own layout: 64 channels, (1, 3, 3, 3) / (3, 3, 3, 1) blocks).
TINY_VAE_PRESETS = {
    "tiny": dict(encoder_block_out_channels=(16, 16), decoder_block_out_channels=(16, 16),
                 num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1)),
    "small": dict(encoder_block_out_channels=(32,) * 4, decoder_block_out_channels=(32,) * 4,
                  num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1)),
    "sd15": dict(),
}


def build_random_tiny_vae(out: str | Path, preset: str = "tiny", seed: int = 0, latent_channels: int = 4) -> Path:
    """Save a random-init diffusers ``AutoencoderTiny`` (TAESD's architecture) at ``out`` with
    ``save_pretrained``, for ``edgegen export --tiny-vae``; its latent channels and upscale match
    ``build_random_sd(preset=...)``'s VAE (pass another ``latent_channels`` to build a mismatch).
    Returns ``out``.
    """
    from diffusers import AutoencoderTiny

    from edgegen.export.diffusers import quiet_hugging_face

    quiet_hugging_face()
    torch.manual_seed(seed)
    tiny = AutoencoderTiny(latent_channels=latent_channels, **TINY_VAE_PRESETS[preset])
    tiny.eval().save_pretrained(str(out))
    return Path(out)


def save_sd_pipeline(out: str | Path, *, unet, vae, text_encoder, tokenizer, lcm: bool = False) -> Path:
    """Save random-init components as a diffusers StableDiffusionPipeline directory with SD's DDIM
    scheduler config (scaled_linear betas 0.00085..0.012, steps_offset 1) and no safety checker;
    with ``lcm`` a LatentConsistencyModelPipeline with LCM_Dreamshaper_v7's LCMScheduler config."""
    from diffusers import DDIMScheduler, LatentConsistencyModelPipeline, LCMScheduler, StableDiffusionPipeline

    if lcm:
        scheduler = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                                 set_alpha_to_one=True, steps_offset=1, original_inference_steps=50)
    else:
        scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                                  set_alpha_to_one=False, steps_offset=1)
    cls = LatentConsistencyModelPipeline if lcm else StableDiffusionPipeline
    pipe = cls(vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(),
               scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(out))
    return Path(out)
