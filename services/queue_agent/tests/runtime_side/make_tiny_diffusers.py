"""Write a tiny random-weight SD1.5 pipeline in diffusers format (~165 MB) that InvokeAI's
model manager accepts as an ``sd-1`` main model; run with InvokeAI's venv.

    <venv>/bin/python make_tiny_diffusers.py OUT_DIR CLIP_TOKENIZER_DIR

InvokeAI identifies a diffusers SD1 folder by ``model_index.json`` (StableDiffusionPipeline)
and ``unet/config.json`` ``cross_attention_dim == 768``; so the UNet is two small blocks with
768-wide cross-attention, the text encoder one 768-wide layer, the VAE four 32-channel blocks.
The tokenizer is the real CLIP ViT-L/14 one (from a local Hugging Face cache; nothing is
downloaded). Images are noise; every code path of a generation is real.
"""

from __future__ import annotations

import sys
from pathlib import Path

from run_invokeai import _DeclareTorchvisionOps


def main() -> int:
    out, tokenizer_dir = Path(sys.argv[1]), sys.argv[2]
    sys.meta_path.insert(0, _DeclareTorchvisionOps())
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,  # what makes it SD1 for InvokeAI's probe
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 32, 32, 32),
        latent_channels=4,
        layers_per_block=1,
        sample_size=64,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=256,
            num_hidden_layers=1,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=768,
        )
    )
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, model_max_length=77)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(out, safe_serialization=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
