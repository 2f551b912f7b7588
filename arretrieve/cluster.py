"""The Ray cluster a command runs on (the `distributed` extra): joining it, and each actor's share
of its CPUs and GPUs. Used by `arr index --ray` (encoding/ray_job.py) and `arr serve --ray`
(server/ray_serve.py)."""

from __future__ import annotations

import logging

from .errors import ArrError

RAY_MISSING = "--ray needs Ray: pip install 'arretrieve[distributed]'"


def ray_module():
    try:
        import ray
    except ImportError:
        raise ArrError(RAY_MISSING) from None
    return ray


def connect(ray, address: str) -> bool:
    """Join the cluster `address` names ('local': start one on this machine for this command;
    'auto': the running one; else host:port or ray://host:port). True if this call connected (and
    so should disconnect); a caller already connected keeps its connection."""
    if ray.is_initialized():
        return False
    try:
        if address == "local":
            ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ArrError(f"cannot reach the Ray cluster {address!r}: {str(exc).splitlines()[0]}") from None
    return True


def actor_share(ray, actors: int) -> tuple[int, int]:
    """(GPUs, CPUs) each of `actors` model-holding actors reserves: one GPU each where the cluster
    has GPUs; else an equal share of the cluster's CPUs (an actor's threads are its CPUs), at most
    one node's worth each, so every actor fits on a node."""
    resources = ray.cluster_resources()
    if int(resources.get("GPU", 0)):
        return 1, 1
    node_cpus = max((int(node["Resources"].get("CPU", 1)) for node in ray.nodes() if node["Alive"]), default=1)
    return 0, max(1, min(node_cpus, int(resources.get("CPU", 1)) // actors))


def use_reserved_cpus() -> str:
    """Inside an actor: torch uses as many threads as the CPUs the actor reserved (Ray's default is
    one thread), and the device is its GPU if it reserved one. Returns that device."""
    import ray

    if ray.get_gpu_ids():
        return "cuda"
    import torch

    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    return "cpu"
