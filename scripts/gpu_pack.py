"""Carry a training run to a lent GPU machine and bring its weights back, within the limits.

A lent machine gets the repository plus at most 64 MiB, and returns at most 8 files of
16 MiB each. The corpus (32 MB of PNG), a full Stage I checkpoint (71 MB with the Stage II
networks, 43 MB for the codec alone) and the wheels do not fit as they are, so:

* ``pack`` (here) writes ``data/gpu/``: the training pictures as lossless WebP (same
  pixels, ~70 % of the PNG bytes), the validation pictures already centre-cropped, the
  k-means tokenizer, and only the codec tensors the shipped ``onedc-tiny`` export lacks
  (the semantic head and the float parsing network). It checks that the shipped export
  *is* the init checkpoint (bit-for-bit in float16), since the init is rebuilt from it.
* ``assemble`` (there) rebuilds the init checkpoint: shipped weights + those extras (it
  refuses a pack made for other shipped weights: ``source.json`` records their sha256).
* ``harvest`` (there) writes a run's newest checkpoint as two float16 files (U-Net and
  the rest, each under 16 MiB).
* ``unharvest`` (here) turns them back into a checkpoint that ``onedc-media train``
  (``init:``) and ``onedc-media export`` take.
* ``revive`` (here or there) rebuilds a Stage I init checkpoint from the shipped export
  alone: the float weights as shipped (float16) and the float parsing network recovered
  from its integer twin (each layer's integers scaled back by its own exponent, the rate
  gains from their fixed-point logarithms), checked by exporting it again and comparing
  every integer with the shipped ``parsing.safetensors``. A run from it with the encoder
  side frozen writes the same bytes as the shipped model; the semantic head starts anew.

float16 is exact for the shipped weights (they are float16), but not for the float32
checkpoint they were exported from: the integer parsing tables an export derives from the
float rate gains moved with float16 rounding alone (held-out rates -0.5 to +4.5 % by rate
point, the same bits of a frozen encoder no longer the same). ``unharvest --base CKPT``
therefore puts back, from the run's float32 init, every tensor that did not train (equal
to the init's float16 rounding): a run that froze the encoder side then encodes exactly
as its init did.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from onedc_media.digest import sha256_file

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "onedc_media" / "weights" / "onedc-tiny" / "model.safetensors"
EXTRAS = "extras.safetensors"


def _codec_state(ckpt: Path) -> dict:
    """The codec's tensors of a checkpoint (Stage II checkpoints prefix them ``codec.``)."""
    from safetensors.torch import load_file

    sd = load_file(str(ckpt / "model.safetensors"))
    if any(k.startswith("codec.") for k in sd):
        sd = {k.removeprefix("codec."): v for k, v in sd.items() if k.startswith("codec.")}
    return sd


def _write_checkpoint(dest: Path, state: dict, step: int, note: str,
                      trainer: dict | None = None) -> None:
    from safetensors.torch import save_file

    dest.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(dest / "model.safetensors"))
    info = {"step": step, "note": note, **(trainer or {})}
    (dest / "trainer.json").write_text(json.dumps(info, indent=2) + "\n")


def pack(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image
    from safetensors.torch import load_file, save_file

    from onedc_media.train.checkpoint import latest_checkpoint
    from onedc_media.train.data import ImageFolderDataset

    out: Path = args.out
    ckpt = latest_checkpoint(args.init)
    if ckpt is None:
        print(f"no checkpoint in {args.init}", file=sys.stderr)
        return 1
    codec = _codec_state(ckpt)
    shipped = load_file(str(SHIPPED))
    for k, v in shipped.items():
        if k not in codec or not torch.equal(codec[k].to(v.dtype), v):
            print(f"the shipped export is not {ckpt} (tensor {k} differs): export it first",
                  file=sys.stderr)
            return 1
    extras = {k: v.half() for k, v in codec.items() if k not in shipped}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    save_file(extras, str(out / EXTRAS))
    shutil.copy(args.tokenizer, out / "tokenizer.safetensors")
    source = {"init": str(ckpt), "shipped_sha256": sha256_file(SHIPPED)}
    (out / "source.json").write_text(json.dumps(source, indent=2) + "\n")

    train = _write_webp(Path(args.train), out / "train")
    val = ImageFolderDataset(args.val, args.val_crop, train=False, skip_invalid=True)
    (out / "val").mkdir()
    for i in range(min(args.val_images, len(val))):
        arr = (val[i].permute(1, 2, 0) * 255).round().byte().numpy()
        Image.fromarray(arr).save(out / "val" / f"{i:02d}_{val.paths[i].stem}.png")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {len(train)} training pictures, {min(args.val_images, len(val))} validation "
          f"crops, {len(extras)} extra tensors; {size / 2**20:.1f} MiB")
    return 0


def _write_webp(src: Path, dest: Path, quality: int | None = None) -> list[Path]:
    """Every picture of *src* as lossless WebP in *dest* (same stems, so the same order),
    decoded as training decodes them (EXIF orientation, 16-bit, RGB). ``quality`` writes
    lossy WebP at that quality instead (a corpus too large for the carry)."""
    from PIL import Image

    from onedc_media.imageio import read_image

    files = sorted(p for p in src.iterdir() if p.is_file())
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for p in files:
        params = ({"lossless": True, "quality": 100} if quality is None
                  else {"quality": quality, "use_sharp_yuv": True})
        Image.fromarray(read_image(p)).save(dest / (p.stem + ".webp"), "WEBP", method=4, **params)
    return files


def images(args: argparse.Namespace) -> int:
    """Training and validation pictures alone, for runs that start from shipped weights
    (the fine decoder: ``configs/train/vae-dec-fine-gpu.yaml``)."""
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    n = {"val": len(_write_webp(args.val, out / "val"))}
    budget = args.max_mib * 2**20
    how = "lossless"
    for quality in (None, 95, 90, 85):  # training pictures: lossless when they fit
        n["train"] = len(_write_webp(args.train, out / "train", quality))
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        how = "lossless" if quality is None else f"WebP quality {quality}"
        if size <= budget:
            break
    else:
        print(f"{out}: {size / 2**20:.1f} MiB, over --max-mib {args.max_mib:g}", file=sys.stderr)
        return 1
    print(f"{out}: {n['train']} training pictures ({how}) and {n['val']} validation pictures "
          f"(lossless); {size / 2**20:.1f} MiB")
    return 0


def assemble(args: argparse.Namespace) -> int:
    from safetensors.torch import load_file

    pack_dir: Path = args.pack
    want = json.loads((pack_dir / "source.json").read_text()).get("shipped_sha256")
    if want != sha256_file(SHIPPED):
        print(f"{pack_dir} was packed for other shipped weights than {SHIPPED}: run "
              "'python scripts/gpu_pack.py pack' again", file=sys.stderr)
        return 1
    state = {k: v.float() for k, v in load_file(str(SHIPPED)).items()}
    state.update({k: v.float() for k, v in load_file(str(pack_dir / EXTRAS)).items()})
    dest = pack_dir / "init" / "checkpoints" / "step_00000000"
    _write_checkpoint(dest, state, 0, "shipped onedc-tiny + extras (scripts/gpu_pack.py)")
    print(f"{dest}: {len(state)} tensors")
    return 0


def harvest(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from onedc_media.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(args.run)
    if ckpt is None:
        print(f"no checkpoint in {args.run}", file=sys.stderr)
        return 1
    state = json.loads((ckpt / "trainer.json").read_text())
    step = state["step"]
    sd = {k: v.half().contiguous() for k, v in _codec_state(ckpt).items()}
    meta = {"step": str(step), "run": str(args.run),
            "wall_seconds": str(state.get("wall_seconds", 0.0)),
            "config": json.dumps(state.get("config", {}))}
    prefix = str(args.prefix)
    args.prefix.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v for k, v in sd.items() if k.startswith("unet.")}, prefix + "-unet.safetensors", meta)
    save_file({k: v for k, v in sd.items() if not k.startswith("unet.")}, prefix + "-rest.safetensors", meta)
    print(f"{ckpt} (step {step}) -> {prefix}-unet/-rest.safetensors")
    return 0


def unharvest(args: argparse.Namespace) -> int:
    from safetensors import safe_open
    from safetensors.torch import load_file

    prefix = str(args.prefix)
    state: dict = {}
    for part in ("unet", "rest"):
        state.update({k: v.float() for k, v in load_file(prefix + f"-{part}.safetensors").items()})
    with safe_open(prefix + "-unet.safetensors", "pt") as fh:
        meta = fh.metadata() or {}
    step = int(meta.get("step", 0))
    trainer = {"wall_seconds": float(meta.get("wall_seconds", 0.0)),
               "config": json.loads(meta.get("config", "{}"))}
    if args.config is not None:  # files harvested before the config travelled with them
        from onedc_media.train.config import load_train_config

        trainer["config"] = load_train_config(args.config, device="cuda").to_dict()
    if args.wall_seconds is not None:
        trainer["wall_seconds"] = args.wall_seconds
    note = f"harvested from {prefix} (float16)"
    if args.base is not None:
        restored = _restore_frozen(state, args.base)
        note += f"; {restored} untrained tensors float32 from {args.base}"
        print(f"{restored} of {len(state)} tensors did not train (and untrained elements of "
              f"the others): float32 from {args.base}")
    dest = args.dest / "checkpoints" / f"step_{step:08d}"
    _write_checkpoint(dest, state, step, note, trainer)
    print(f"{dest}: {len(state)} tensors")
    return 0


def _restore_frozen(state: dict, base: Path) -> int:
    """Where *state* equals *base*'s float16 rounding, element by element, put *base*'s own
    value back (a rate point that did not train keeps its row of ``parsing.log_gain``
    exactly). Returns how many tensors came back whole."""
    import torch

    from onedc_media.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(base)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {base}")
    ref = _codec_state(ckpt)
    whole = 0
    for name, value in state.items():
        own = ref.get(name)
        if own is None or own.shape != value.shape:
            continue
        if not own.is_floating_point():
            if torch.equal(own.to(value.dtype), value):
                state[name] = own.clone()
                whole += 1
            continue
        same = own.to(torch.float16).to(value.dtype) == value
        state[name] = torch.where(same, own.to(value.dtype), value)
        whole += bool(same.all())
    if whole == 0:
        raise ValueError(f"--base {base}: no tensor matches the harvested weights (not their init?)")
    return whole


def _parsing_float_state(parsing, tensors: dict) -> dict:
    """Float parameters of ``parsing`` (a ParsingNet) whose export is ``tensors``."""
    import torch

    layers = {f"hyper.{i}": layer for i, layer in enumerate(parsing.hyper.layers)}
    layers.update({f"context.{k + 1}": layer for k, layer in enumerate(parsing.context)})
    layers.update({f"params.{k}.{i}": layer for k, seq in enumerate(parsing.params)
                   for i, layer in enumerate(seq.layers)})
    names = {id(m): n for n, m in parsing.named_modules()}
    state = {}
    for key, layer in layers.items():
        k = tensors[f"{key}.shift"].to(torch.float64) - layer.in_frac + layer.out_frac
        w = tensors[f"{key}.weight"].to(torch.float64) / torch.pow(2.0, k).view(-1, 1, 1, 1)
        b = tensors[f"{key}.bias"].to(torch.float64) / torch.pow(2.0, k + layer.in_frac)
        state[f"parsing.{names[id(layer)]}.weight"] = w.float()
        state[f"parsing.{names[id(layer)]}.bias"] = b.float()
    # the log-gain lies where all three of its roundings agree: the intersection of the
    # intervals each exported integer allows, whose middle survives float32
    act, gs = 2.0 ** parsing.config.act_frac, 2.0 ** parsing.config.gain_frac
    lg_int = tensors["log_gain"].to(torch.float64)
    g, ig = tensors["gain"].to(torch.float64), tensors["inv_gain"].to(torch.float64)
    lo = torch.stack([(lg_int - 0.5) / act, torch.log((g - 0.5) / gs),
                      -torch.log((ig + 0.5) / gs)]).amax(0)
    hi = torch.stack([(lg_int + 0.5) / act, torch.log((g + 0.5) / gs),
                      -torch.log((ig - 0.5) / gs)]).amin(0)
    if bool((lo >= hi).any()):
        raise ValueError("the exported gains admit no common log-gain")
    state["parsing.log_gain"] = ((lo + hi) / 2).float()
    return state


def revive(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import load_file

    from onedc_media.model.loading import build_model, embedded_model_dir

    src = Path(args.model) if Path(args.model).is_dir() else embedded_model_dir(args.model)
    model = build_model(args.config)
    shipped = load_file(str(src / "model.safetensors"))
    missing, unexpected = model.load_state_dict(shipped, strict=False)
    if unexpected:
        print(f"{src}: tensors the model lacks: {unexpected[:5]}", file=sys.stderr)
        return 1
    ints = load_file(str(src / "parsing.safetensors"))
    state = _parsing_float_state(model.parsing, ints)
    model.load_state_dict(state, strict=False)
    again = model.parsing.export()
    bad = [k for k, v in ints.items() if not torch.equal(again[k].to(v.dtype), v)]
    if bad:
        print(f"the recovered parsing network does not export to {src}: {bad[:5]}",
              file=sys.stderr)
        return 1
    left = [k for k in missing if k not in state and not k.startswith("aux_head.")]
    if left:
        print(f"tensors neither shipped nor recovered: {left[:5]}", file=sys.stderr)
        return 1
    full = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    _write_checkpoint(args.out, full, 0, f"revived from {src} (sha256 "
                      f"{sha256_file(src / 'model.safetensors')[:16]})")
    print(f"{args.out}: {len(full)} tensors; parsing recovered exactly "
          f"({len(ints)} integer tensors); aux head initialised anew")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack", help="write data/gpu (here)")
    p.add_argument("--init", type=Path, default=ROOT / "runs" / "stage1n-tiny",
                   help="checkpoint (or run) the shipped weights were exported from")
    p.add_argument("--tokenizer", type=Path,
                   default=ROOT / "runs" / "stage1c-tiny" / "tokenizer.safetensors")
    p.add_argument("--train", type=Path, default=ROOT / "data" / "corpus" / "train")
    p.add_argument("--val", type=Path, default=ROOT / "data" / "corpus" / "val")
    p.add_argument("--val-images", type=int, default=6)
    p.add_argument("--val-crop", type=int, default=256)
    p.add_argument("-o", "--out", type=Path, default=ROOT / "data" / "gpu")
    p.set_defaults(fn=pack)
    p = sub.add_parser("images", help="write data/gpu-fine: the pictures alone, lossless (here)")
    p.add_argument("--train", type=Path, default=ROOT / "data" / "corpus" / "train")
    p.add_argument("--val", type=Path, default=ROOT / "data" / "corpus" / "val")
    p.add_argument("-o", "--out", type=Path, default=ROOT / "data" / "gpu-fine")
    p.add_argument("--max-mib", type=float, default=56.0,
                   help="size budget (the carry is 64 MiB with the wheels); training "
                        "pictures go lossy (WebP 95, 90, 85) only when lossless does not fit")
    p.set_defaults(fn=images)
    p = sub.add_parser("revive", help="a Stage I init checkpoint from the shipped export alone")
    p.add_argument("--model", default="onedc-tiny", help="embedded model name or exported folder")
    p.add_argument("--config", default=str(ROOT / "configs" / "models" / "onedc-tiny.yaml"))
    p.add_argument("-o", "--out", type=Path, default=ROOT / "runs" / "init-onedc-tiny")
    p.set_defaults(fn=revive)
    p = sub.add_parser("assemble", help="rebuild the init checkpoint (there)")
    p.add_argument("pack", type=Path, nargs="?", default=ROOT / "data" / "gpu")
    p.set_defaults(fn=assemble)
    p = sub.add_parser("harvest", help="a run's newest checkpoint -> PREFIX-{unet,rest}.safetensors")
    p.add_argument("run", type=Path)
    p.add_argument("prefix", type=Path)
    p.set_defaults(fn=harvest)
    p = sub.add_parser("unharvest", help="PREFIX-{unet,rest}.safetensors -> a checkpoint in DEST")
    p.add_argument("prefix", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--config", type=Path, help="the run's training config (for the record)")
    p.add_argument("--wall-seconds", type=float, help="the run's training time (for the record)")
    p.add_argument("--base", type=Path,
                   help="the run's float32 init (checkpoint or run): tensors that did not "
                        "train come back from it bit for bit")
    p.set_defaults(fn=unharvest)
    args = ap.parse_args(argv)
    from safetensors import SafetensorError

    try:
        return args.fn(args)
    except (OSError, ValueError, KeyError, SafetensorError) as exc:  # missing or foreign file
        print(f"gpu_pack {args.verb}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
