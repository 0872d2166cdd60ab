"""Per-stage timings of OneDC encode and decode (``onedc-media bench model``).

Every stage of the data flow is timed separately on the same picture, interleaved round
robin with an AVIF decode of that picture (the ratio the issue asks for), and the
entropy coder's throughput is reported in symbols per second.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from onedc_media.evaluate.bench import BenchResult, BenchRow, interleaved

__all__ = ["bench_model_stages"]


@torch.no_grad()
def bench_model_stages(engine, image: np.ndarray, *, q: int = 2, repeats: int = 5, warmup: int = 1,
                       reference_codec: str | None = "avif") -> BenchResult:
    from onedc_media.model.onedc import pad_to_multiple

    m = engine.model
    dev, dt = engine.device, engine.dtype
    h, w = image.shape[:2]
    pixels = h * w
    x = pad_to_multiple(engine._to_tensor([image])).to(dev, dt)
    latent = m.vae.encode(x)
    y, sem = m.analysis(latent, m.patch_embed(x))
    enc = engine.analyse([image])[0]
    payload = engine.entropy_encode(enc, q)
    dec = engine.entropy_decode(payload)
    yh = dec.y_hat[None].to(dev, dt)
    zi = dec.z_int[None].to(dev, dt)
    tokens, sem_up = m.adaptor(m.z_float(zi))
    control = m.synthesis(yh, sem_up)
    t = torch.full((1,), m.config.timestep, device=dev, dtype=torch.long)
    lat_hat = m.unet(control, t, encoder_hidden_states=tokens).sample
    n_symbols = int(dec.y_hat.numel())

    def sync(fn: Callable[[], object]) -> Callable[[], object]:
        if dev.type != "cuda":
            return fn

        def run() -> object:
            out = fn()
            torch.cuda.synchronize(dev)
            return out

        return run

    tasks: dict[tuple[str, str], Callable[[], object]] = {
        ("onedc", "enc: vae encoder"): sync(lambda: m.vae.encode(x)),
        ("onedc", "enc: analysis + hyper + fsq"): sync(
            lambda: m.fsq(m.hyper_encoder(*m.analysis(latent, m.patch_embed(x))))),
        ("onedc", "enc: entropy coding"): lambda: engine.entropy_encode(enc, q),
        ("onedc", "encode"): lambda: engine.compress([image], q),
        ("onedc", "dec: entropy decoding"): lambda: engine.entropy_decode(payload),
        ("onedc", "dec: adaptor + synthesis"): sync(lambda: m.synthesis(yh, m.adaptor(m.z_float(zi))[1])),
        ("onedc", "dec: u-net"): sync(lambda: m.unet(control, t, encoder_hidden_states=tokens).sample),
        ("onedc", "dec: vae decoder"): sync(lambda: m.vae.decode(lat_hat)),
        ("onedc", "decode"): lambda: engine.decompress([payload]),
    }
    notes: list[str] = []
    ref_bytes = 0
    if reference_codec:
        import onedc_media
        from onedc_media.errors import OdcError

        try:
            info = onedc_media.default_plugins().codecs.get(reference_codec)
            codec = info.create()
            renc = codec.encoder(info.resolve_options({}))
            rpkt = renc.encode([image])[0]
            ref_bytes = len(rpkt)
            rdec = codec.decoder(dict(renc.params), model=renc.model)
            tasks[(reference_codec, "decode")] = lambda: rdec.decode([rpkt])
        except OdcError as exc:
            notes.append(f"{reference_codec}: skipped: {exc}")
    times = interleaved(tasks, repeats=repeats, warmup=warmup)
    result = BenchResult(
        f"{engine.ref.name} stages on {w}x{h} ({engine.device.type}, {str(dt).replace('torch.', '')}, "
        f"{torch.get_num_threads()} threads), median of {repeats}",
        reference=reference_codec if reference_codec and (reference_codec, "decode") in times else None,
        notes=notes,
        settings={"q": q + 1, "repeats": repeats, "threads": torch.get_num_threads()},
    )
    for (subject, stage), samples in times.items():
        if isinstance(samples, Exception):
            result.notes.append(f"{subject} {stage}: {samples}")
            continue
        extra: dict[str, object] = {}
        if stage in ("dec: entropy decoding", "enc: entropy coding"):
            extra["msym_per_s"] = n_symbols / float(np.median(samples)) / 1e6
        if subject == "onedc" and stage in ("encode", "decode"):
            extra["bytes"] = len(payload)
        if subject == reference_codec:
            extra["bytes"] = ref_bytes
        result.rows.append(BenchRow(subject, stage, tuple(samples), pixels, 1, extra))
    return result
