"""``onedc-media export``: a training checkpoint -> an inference model folder."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a training checkpoint to an inference model folder",
        description="Write config.json, model.safetensors (float16, no training-only heads), "
        "parsing.safetensors (the integer entropy-parameter model and tables) and a model card. "
        "Use the folder with --model, or as the embedded default (onedc_media/weights/NAME).",
        epilog="examples:\n"
        "  onedc-media export runs/stage1-tiny -o my-model/\n"
        "  onedc-media export runs/vae-dec-fine-tiny --fine-decoder -o my-model/   "
        "# add a fine decoder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="run directory or checkpoint folder")
    p.add_argument("-o", "--output", required=True, help="output model folder")
    p.add_argument("--model", help="model config, if the checkpoint does not record it")
    p.add_argument("--card", help="Markdown file to use as MODEL_CARD.md")
    p.add_argument("--fine-decoder", action="store_true",
                   help="the checkpoint is a VAE-decoder run (configs/train/vae-dec-fine-tiny.yaml): "
                   "write its decoder into the existing model folder -o as fine-decoder.safetensors, "
                   "the decoder that draws pictures with the residual layer (--opt enhance=N); "
                   "the one it replaces stays beside it as fine-decoder.<id>.safetensors, so "
                   "pictures written with it still decode")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from onedc_media.model.engine import OneDCEngine
    from onedc_media.train.export import export_checkpoint

    if args.fine_decoder:
        from onedc_media.model.fine_decoder import EARLIER_FINE_DECODERS
        from onedc_media.train.export import export_fine_decoder

        path, sha = export_fine_decoder(args.checkpoint, args.output)
        print(f"wrote the fine decoder {path}\n  sha256 {sha}")
        for kept in sorted(path.parent.glob(EARLIER_FINE_DECODERS)):
            print(f"  kept earlier {kept.name}")
        return 0
    card = Path(args.card).read_text() if args.card else None
    out = export_checkpoint(args.checkpoint, args.output, model_spec=args.model, card=card)
    ref = OneDCEngine.from_pretrained(out).ref
    print(f"exported {ref.name} to {out}\n  weights sha256 {ref.sha256}\n  parsing sha256 {ref.parsing_sha256}")
    return 0
