"""The Ray engine: Ray Data ``map_batches`` over an actor pool, the driver commits.

::

    plan (JSON lines in DEST/.onedc-archive/spool/) ─read_text─> Dataset of batches
      ─map_batches(_ArchiveActor, actor pool)─> results (id, .odc bytes, manifest fields)
      ─iter_batches─> driver: Committer (spool, fsync, rename, COMMIT)

Each actor builds one :class:`~onedc_media.archive.encode.ArchiveEncoder` (the class
the local engine uses) in its constructor, so the model loads once per actor, and runs
:meth:`~onedc_media.archive.encode.ArchiveEncoder.process` on one planned batch per
call: the same batches as the local engine, hence the same bytes at equal thread
counts. Only the driver writes outputs and the manifest, so exactly-once and resume
work as with the local engine; the output bytes travel back through the object store
(archives are small at OneDC rates).

Resources are sized from the cluster: with GPUs and a CUDA-capable codec, one actor per
GPU; otherwise ``jobs`` actors (default: one per CPU) sharing all CPUs but one as
fractional ``num_cpus``, and the read tasks ask for 0.1 CPU: on a 2-CPU node two 1-CPU
actors would starve the read tasks and the job would hang. The plan file needs a file
system the actors can read (local, or DEST shared across the cluster).

Needs ``pip install "onedc-media[ray]"``. :func:`run_ray` connects to a running Ray
(``ray.init`` already called, or ``address``), or starts a local one and stops it after.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from onedc_media.archive.encode import ArchiveEncoder, EncodeSettings, WorkItem
from onedc_media.errors import OdcError

__all__ = ["RayUnavailableError", "actor_resources", "run_ray"]


#: CPUs a plan-reading task asks for: it reads a few kB, it must never wait for actors.
_READ_CPUS = 0.1


class RayUnavailableError(OdcError, ImportError):
    """The Ray engine was asked for but Ray (Data) is not installed."""


class _ArchiveActor:
    """One Ray actor: an :class:`ArchiveEncoder` (model loaded once) over plan lines."""

    def __init__(self, settings: dict[str, Any], spool: str | None, plugins: Any = None) -> None:
        self.encoder = ArchiveEncoder(
            EncodeSettings.from_dict(settings), plugins=plugins, spool=spool
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids, data, meta = [], [], []
        for line in batch["text"]:
            items = [WorkItem(**d) for d in json.loads(line)]
            for r in self.encoder.process(items):
                payload = r.pop("data")
                ids.append(r["id"])
                data.append(payload if payload is not None else b"")
                meta.append(json.dumps(r))
        return {
            "id": np.asarray(ids, dtype=np.int64),
            "data": np.asarray(data, dtype=object),
            "meta": np.asarray(meta, dtype=object),
        }


def actor_resources(
    cluster: dict[str, float],
    *,
    learned_cuda: bool,
    actors: int | None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
) -> tuple[int, float, float]:
    """``(actors, num_cpus, num_gpus)`` per actor for a cluster's resources."""
    cpus = float(cluster.get("CPU", 1.0))
    gpus = float(cluster.get("GPU", 0.0))
    if learned_cuda and gpus >= 1 and num_gpus != 0:
        per_gpu = num_gpus or 1.0
        n = actors or max(1, int(gpus / per_gpu))
        return n, num_cpus if num_cpus is not None else max(0.05, min(1.0, (cpus - 1) / n)), per_gpu
    n = actors or max(1, int(cpus))
    # Leave one whole CPU to the read tasks and the rest of the pipeline.
    per_cpu = num_cpus if num_cpus is not None else max(0.05, min(1.0, (cpus - 1) / n))
    return n, per_cpu, 0.0


def _read_cpus(read: Any) -> dict[str, Any]:
    """``num_cpus`` for read tasks: a named parameter in newer Ray, a remote arg before."""
    import inspect

    if "num_cpus" in inspect.signature(read).parameters:
        return {"num_cpus": _READ_CPUS}
    return {"ray_remote_args": {"num_cpus": _READ_CPUS}}


def run_ray(
    batches: Iterable[list[WorkItem]],
    settings: EncodeSettings,
    committer: Any,
    *,
    actors: int | None = None,
    spool: str | None = None,
    address: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    plugins: Any = None,
) -> None:
    """Encode *batches* on Ray and hand the results to *committer* (on the driver).

    :param actors: actor pool size (default: see the module docstring).
    :param spool: a folder the actors can reach for the plan and temporary files.
    :param address: a Ray cluster to connect to when Ray is not initialised yet.
    :param num_cpus: / :param num_gpus: resources per actor (default: from the cluster).
    :param plugins: loaded plugins, shipped to the actors (pickled by Ray); default:
        the installed ones, which each actor loads itself.
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayUnavailableError(
            'the ray engine needs Ray Data: pip install "onedc-media[ray]"'
        ) from None
    import secrets
    import tempfile

    import onedc_media

    given_plugins = plugins
    plugins = plugins or onedc_media.default_plugins()
    info = plugins.codecs.get(settings.codec)
    device = settings.device or str(settings.options.get("device", "auto"))
    uses_cuda = info.capabilities.cuda and not device.startswith("cpu")
    started = False
    if not ray.is_initialized():
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        started = True
    spool = spool or tempfile.mkdtemp(prefix="onedc-archive-")
    os.makedirs(spool, exist_ok=True)
    plan = os.path.join(spool, f"plan-{secrets.token_hex(8)}.jsonl")
    try:
        n_batches = 0
        with open(plan, "w", encoding="utf-8") as fh:
            for batch in batches:
                fh.write(json.dumps([i.to_dict() for i in batch]) + "\n")
                n_batches += 1
        if not n_batches:
            return
        n, cpu, gpu = actor_resources(
            ray.cluster_resources(),
            learned_cuda=uses_cuda,
            actors=actors,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
        )
        n = min(n, n_batches)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ds = ray.data.read_text(
            plan,
            override_num_blocks=max(1, min(n_batches, 4 * n)),
            **_read_cpus(ray.data.read_text),
        )
        ds = ds.map_batches(
            _ArchiveActor,
            fn_constructor_kwargs={
                "settings": settings.to_dict(),
                "spool": spool,
                "plugins": given_plugins,
            },
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n),
            num_cpus=cpu,
            num_gpus=gpu,
        )
        for out in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            results = []
            for i, data, meta in zip(out["id"], out["data"], out["meta"]):
                r = json.loads(meta)
                r["id"] = int(i)
                r["data"] = bytes(data) if r["status"] == "done" else None
                results.append(r)
            committer.commit(results)
    finally:
        try:
            os.unlink(plan)
        except FileNotFoundError:
            pass
        if started:
            ray.shutdown()
