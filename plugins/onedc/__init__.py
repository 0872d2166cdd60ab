"""The OneDC learned codec, registered through the public ``register_codecs`` hook.

Declaration only: torch, diffusers and the model load when the codec is first used.
"""

from __future__ import annotations

from onedc_media import Capabilities, CodecInfo, CodecOption, CodecRegistry, hookimpl

__all__ = ["ONEDC", "register_codecs"]

ONEDC = CodecInfo(
    name="onedc",
    long_name="OneDC one-step diffusion image codec (learned, bit-exact entropy path)",
    kind="image",
    lossy=True,
    factory="onedc_media_plugins.onedc.codec:OneDCCodec",
    options=(
        CodecOption("quality", "int", None, "rate point: 1 = fewest bits; the model defines how "
                    "many and names a default (the middle of its ladder if it does not); its model "
                    "card gives the bits each point spends", min=1, max=16),
        CodecOption("model", "str", "onedc-tiny", "embedded model name or a local exported model folder"),
        CodecOption("device", "str", "auto", "synthesis device: auto, cpu, cuda, cuda:N "
                    "(entropy coding always runs on the CPU)"),
        CodecOption("dtype", "str", "float32", "synthesis precision", choices=("float32", "bfloat16", "float16")),
        CodecOption("tile", "int", 1024, "pictures larger than this many pixels on a side are "
                    "coded in overlapping tiles (bounds memory)", min=256, max=8192),
        CodecOption("refine", "int", 0, "encoder effort: gradient steps that fit each picture's latents "
                    "to the decoder before coding (0 = off; more steps give more quality at the same "
                    "or fewer bits, a few dozen give most of it). Slow: each step runs the decoder "
                    "forwards and backwards, so encode time grows with the steps. Decoding is "
                    "unchanged", min=0, max=1000),
        CodecOption("enhance", "float", 0, "latent residual layer: integer corrections to the "
                    "latent the decoder's VAE receives, coded after the rate point (0 = off; 1..3 "
                    "spend more bits for more quality, each whole level halves the weight of the "
                    "layer's bits, fractions lie between). Fitted through the model's fine decoder "
                    "and its own, keeping the cheaper per picture: slow, gradient steps through "
                    "the VAE decoder for each. Decoding costs the same; decoders without the "
                    "layer refuse such files", min=0, max=3),
    ),
    capabilities=Capabilities(batch=True, cuda=True, lossless=False),
    quality_ladder=(1, 2, 3, 4, 5, 6),
)


@hookimpl
def register_codecs(registry: CodecRegistry) -> None:
    registry.add(ONEDC)
