"""Corpus encoding on a Ray cluster (the `distributed` extra): `arr index --ray ADDRESS --workers N`.

The driver streams the corpus once, as the single-process job does, and hands each pending shard's
texts to a pool of Ray actors, each holding one loaded model (one GPU each where the cluster has
GPUs). The vectors come back to the driver, which writes them into the same job folder with the
same atomic write and hash: a Ray run and a local run of a corpus share the cache, and an
interrupted run of either resumes by encoding only the shards that have no hash yet. Each actor
has at most two shards in flight, so the driver holds a bounded number of texts whatever the
corpus size. (Ray Data's readers would bypass the toolkit's corpus reading: field names,
validation, chunking and the shard order the cache is keyed by.)
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Callable, Iterator

from ..cluster import actor_share, connect, ray_module, use_reserved_cpus
from ..errors import ArrError
from ..registry import ModelEntry

log = logging.getLogger(__name__)

IN_FLIGHT_PER_ACTOR = 2


class ShardEncoder:
    """A Ray actor: one model, loaded once, encoding whole shards."""

    def __init__(self, entry_payload: dict, dtype: str, batch_size: int):
        from . import load_embedder

        device = use_reserved_cpus()
        self.embedder = load_embedder(ModelEntry.from_dict(entry_payload), device=device, dtype=dtype)
        self.batch_size = batch_size

    def encode(self, texts: list[str]):
        return self.embedder.encode(texts, role="document", batch_size=self.batch_size)


def encode_with_ray(job, shards: Iterator[tuple[int, list[str]]], entry: ModelEntry, dtype: str, address: str,
                    workers: int | None, batch_size: int, on_progress: Callable[[int], None] | None = None) -> None:
    """Encode `shards` ((number, texts), as `EncodeJob.pending_texts` streams them) on `workers`
    actors (default: one per GPU of the cluster, or one on a cluster without GPUs) and save each
    into `job` (the EncodeJob)."""
    ray = ray_module()
    connected = connect(ray, address)
    actors: list = []
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        workers = workers or max(1, gpus)
        gpu_each, cpus = actor_share(ray, workers)
        actor = ray.remote(num_gpus=gpu_each, num_cpus=cpus)(ShardEncoder)
        actors = [actor.remote(entry.to_dict(), dtype, batch_size) for _ in range(workers)]
        log.info("encoding %d shards on %d Ray workers (%s)", len(job.pending()), workers,
                 f"{gpus} GPUs in the cluster" if gpus else f"{cpus} CPUs each")
        _run(ray, job, shards, actors, on_progress)
    finally:
        for actor in actors:  # their CPUs and GPUs go back to the cluster now, not when collected
            ray.kill(actor)
        if connected:
            ray.shutdown()


def _run(ray, job, shards: Iterator[tuple[int, list[str]]], actors: list, on_progress) -> None:
    free = deque(actor for actor in actors for _ in range(IN_FLIGHT_PER_ACTOR))
    in_flight: dict = {}  # result ref -> (actor, shard number, texts count)

    def collect_one() -> None:
        (ready,), _ = ray.wait(list(in_flight), num_returns=1)
        actor, number, count = in_flight.pop(ready)
        try:
            vectors = ray.get(ready)
        except ray.exceptions.RayError as exc:
            if isinstance(exc, ray.exceptions.OutOfMemoryError):
                detail = "Ray killed it: its node ran low on memory (fewer --workers, or a smaller --batch-size)"
            else:  # a task's error ends with the worker's own exception line
                lines = str(getattr(exc, "cause", None) or exc).strip().splitlines()
                detail = lines[-1] if lines else type(exc).__name__
            raise ArrError(f"a Ray worker failed on shard {number} (finished shards are kept; re-run to resume): "
                           f"{detail}") from None
        job.save_shard(number, vectors)
        free.append(actor)
        if on_progress:
            on_progress(count)

    for number, texts in shards:
        while not free:
            collect_one()
        actor = free.popleft()
        in_flight[actor.encode.remote(texts)] = (actor, number, len(texts))
    while in_flight:
        collect_one()
