"""Write a random-weight checkpoint that both runtimes take for Stable Diffusion 1.5.

    <comfyui venv>/bin/python make_checkpoint.py <ComfyUI tree> <out.safetensors>

The tensors are built with ComfyUI's own model classes so the key names and shapes are exactly
what its SD1.5 detection (and SD WebUI's, given the matching .yaml) expects: a UNet with SD1.5's
width (320 channels, 768-wide cross-attention) but a single resolution level, so sampling on a
CPU takes seconds; the CLIP-L text encoder and the KL VAE at their real sizes. Weights are
seeded random numbers (images are noise); no download is involved. Runs inside the ComfyUI
virtual environment: ComfyUI, torch and safetensors.
"""

from __future__ import annotations

import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tv_compat

SEED = 20240601
# The UNet ComfyUI would detect for SD1.5, cut to one level (channel_mult [1]).
UNET = {
    "image_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [1],
    "channel_mult": [1],
    "num_heads": 8,
    "num_head_channels": -1,
    "use_spatial_transformer": True,
    "transformer_depth": [1],
    "transformer_depth_output": [1, 1],
    "transformer_depth_middle": 1,
    "context_dim": 768,
    "use_linear_in_transformer": False,
    "legacy": False,
    "adm_in_channels": None,
}
# SD1.5's VAE (the first-stage model of v1-inference.yaml).
VAE = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}


def randomize(module, generator) -> None:  # type: ignore[no-untyped-def]
    """Variance-preserving random weights: N(0, 1/fan_in) for matrices and kernels, unit norm
    scales, small random biases. Keeps activations finite through every block. Biases are not
    zero: with zero biases the text encoder's output has a mean of almost exactly 0, and SD
    WebUI's prompt-weighting step divides by that mean (NaN for some prompts)."""
    import torch  # noqa: PLC0415

    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.dim() <= 1:
                if "norm" in name and name.endswith("weight"):
                    param.fill_(1.0)
                else:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
                continue
            fan_in = math.prod(param.shape[1:])
            param.copy_(torch.randn(param.shape, generator=generator) / math.sqrt(fan_in))


def main() -> None:
    tree, out = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    tv_compat.install()
    os.chdir(tree)
    sys.path.insert(0, tree)
    started = time.monotonic()

    import safetensors.torch  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from comfy.cli_args import args  # noqa: PLC0415

    args.cpu = True  # no CUDA with the CPU wheel
    import comfy.ops  # noqa: PLC0415
    import comfy.sd1_clip  # noqa: PLC0415
    from comfy.ldm.models.autoencoder import AutoencoderKL  # noqa: PLC0415
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel  # noqa: PLC0415

    generator = torch.Generator().manual_seed(SEED)
    ops = comfy.ops.disable_weight_init
    unet = UNetModel(**UNET, operations=ops, device="cpu", dtype=torch.float32)
    randomize(unet, generator)
    clip = comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32)
    randomize(clip.transformer, generator)
    embeddings = clip.transformer.text_model.embeddings
    with torch.no_grad():  # small embeddings, as trained CLIP has
        embeddings.token_embedding.weight.copy_(
            torch.randn(embeddings.token_embedding.weight.shape, generator=generator) * 0.02
        )
        embeddings.position_embedding.weight.copy_(
            torch.randn(embeddings.position_embedding.weight.shape, generator=generator) * 0.01
        )
    vae = AutoencoderKL(ddconfig=VAE, embed_dim=4)
    randomize(vae, generator)

    tensors = {}
    for prefix, module in (
        ("model.diffusion_model.", unet),
        ("cond_stage_model.transformer.", clip.transformer),
        ("first_stage_model.", vae),
    ):
        for key, value in module.state_dict().items():
            if torch.is_floating_point(value):
                tensors[prefix + key] = value.detach().to(torch.float16).contiguous()

    os.makedirs(os.path.dirname(out), exist_ok=True)
    partial = out + ".partial"
    safetensors.torch.save_file(
        tensors, partial, metadata={"sdq": "random weights for API conformance tests"}
    )
    os.replace(partial, out)
    print(
        f"wrote {out}: {os.path.getsize(out) / 1e6:.0f} MB, {len(tensors)} tensors, "
        f"{time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
