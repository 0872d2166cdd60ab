"""How OneDC synthesis scales over CPU cores: the bound the decoder runtime works against.

Not a test. Decodes the latents of one picture size once, then times per frame::

    GOMP_SPINCOUNT=1000 python benchmarks/cpu_scaling.py            # 512x512, 8 frames
    GOMP_SPINCOUNT=1000 python benchmarks/cpu_scaling.py --size 256x256 --frames 16

rows:

- ``entropy``: entropy decoding (exact, the runtime's entropy threads), one thread;
- ``synthesis 1 thread / N threads``: one worker, torch intra-op threads 1 and N;
- ``N workers (threads|processes)``: N workers of one intra-op thread each, as the
  runtime's ``cpu_workers`` runs them (threads), and as forked processes -- if processes
  were clearly faster, the GIL would be the limit;
- ``sequential path``: ``engine.synthesize([engine.entropy_decode(p)])`` per frame with N
  intra-op threads (what ``bench decode`` calls sequential);
- ``bound``: (entropy + one-thread synthesis) / N, the best a pipeline that keeps all N
  cores busy can do per frame; sequential over it is the largest speedup the runtime can
  show on this machine.

Synthesis runs as the runtime runs it: the NHWC replica, batches through the latent
networks, the VAE decoder one frame at a time where that is faster.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="512x512", help="WIDTHxHEIGHT (default 512x512)")
    ap.add_argument("--frames", type=int, default=8, help="frames per worker round (default 8)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                    help="N (default: the CPU count)")
    ap.add_argument("--quality", "-q", type=int, default=3, help="rate point (default 3)")
    ap.add_argument("--repeats", type=int, default=3, help="median of this many (default 3)")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    n = max(1, args.workers)
    frames = max(n, args.frames - args.frames % n)

    import torch

    from onedc_media.model.engine import OneDCEngine
    from onedc_media.runtime.bench import make_clip
    from onedc_media.runtime.decoder import auto_batch_size, engine_on, vae_batch_size

    engine = OneDCEngine.from_pretrained("onedc-tiny")
    packets = engine.compress(make_clip(frames, h, w), args.quality - 1)
    items = [engine.entropy_decode(p) for p in packets]
    replica = engine_on(engine, "cpu", channels_last=True)
    batch = auto_batch_size(replica, h, w)
    vb = vae_batch_size(h, w)

    def synth(part: list) -> None:
        for s in range(0, len(part), batch):
            replica.synthesize(part[s : s + batch], batch_size=batch, vae_batch_size=vb)

    def per_frame(fn, count: int) -> float:
        fn()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) / count * 1e3

    def one_thread_worker(part: list) -> None:
        torch.set_num_threads(1)
        synth(part)

    share = frames // n
    parts = [items[i * share : (i + 1) * share] for i in range(n)]

    def in_threads() -> None:
        ts = [threading.Thread(target=one_thread_worker, args=(p,)) for p in parts]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def in_processes() -> None:
        ctx = mp.get_context("fork")
        ps = [ctx.Process(target=one_thread_worker, args=(p,)) for p in parts]
        for p in ps:
            p.start()
        for p in ps:
            p.join()

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    entropy = per_frame(lambda: [engine.entropy_decode(p) for p in packets], frames)
    one = per_frame(lambda: synth(items), frames)
    torch.set_num_threads(n)
    many = per_frame(lambda: synth(items), frames)
    sequential = per_frame(
        lambda: [engine.synthesize([engine.entropy_decode(p)]) for p in packets], frames
    )
    torch.set_num_threads(1)
    threads = per_frame(in_threads, frames)
    procs = per_frame(in_processes, frames)
    torch.set_num_threads(saved)
    bound = (entropy + one) / n
    rows = [
        ("entropy, 1 thread", entropy),
        ("synthesis, 1 thread", one),
        (f"synthesis, {n} threads", many),
        (f"{n} workers (threads)", threads),
        (f"{n} workers (processes)", procs),
        (f"sequential path ({n} threads, per frame)", sequential),
        (f"bound: (entropy + 1-thread synthesis) / {n}", bound),
    ]
    print(f"onedc-tiny {w}x{h} q{args.quality}, {frames} frames, latent batch {batch}, "
          f"VAE batch {vb}, median of {args.repeats} (ms per frame)")
    for name, ms in rows:
        print(f"  {name:<44} {ms:8.1f}")
    print(f"  sequential / bound: {sequential / bound:.2f}x  -- the most a pipeline that "
          f"keeps {n} cores busy can gain here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
