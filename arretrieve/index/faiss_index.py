"""FAISS index types, the `auto` choice, training on a seeded sample, and GPU use when present.

All indexes use inner product over L2-normalised vectors, i.e. cosine similarity.

`hnsw-pca` walks an HNSW graph built over a low-dimensional copy of the vectors (projected on
their principal axes, then re-normalised) and re-ranks the candidates it finds with exact inner
products on the full vectors (FAISS's IndexRefineFlat). Each graph step then costs a fraction of
a full-dimension distance, which is where HNSW spends its time.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import ArrError
from ..home import write_atomic

log = logging.getLogger(__name__)

INDEX_TYPES = ("auto", "flat", "hnsw", "hnsw-pca", "ivf-flat", "ivf-pq", "sq-fp16", "sq-int8")
# Types fitted to a seeded sample of the corpus before vectors are added (hnsw-pca: its projection).
TRAINED_TYPES = ("hnsw-pca", "ivf-flat", "ivf-pq", "sq-fp16", "sq-int8")
GRAPH_TYPES = ("hnsw", "hnsw-pca")
# The search settings each type understands (`arr search --nprobe/--ef-search/--rerank-factor`).
# rerank_factor: k × this many candidates are re-scored exactly, so deeper result lists keep their recall.
SEARCH_SETTINGS = {
    "flat": (), "hnsw": ("ef_search",), "hnsw-pca": ("ef_search", "rerank_factor"), "ivf-flat": ("nprobe",),
    "ivf-pq": ("nprobe", "rerank_factor"), "sq-fp16": (), "sq-int8": (),
}
# Below this many vectors exact search is fast enough that an approximate index only loses quality.
FLAT_LIMIT = 200_000
HNSW_LIMIT = 5_000_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
# A graph over reduced vectors is cheap to build, so hnsw-pca builds it deeper by default.
HNSW_PCA_EF_CONSTRUCTION = 200


@functools.cache
def faiss_module():
    """The faiss package, checked once per process (it is asked for on every index operation)."""
    from importlib.metadata import PackageNotFoundError, version

    installed = []
    for distribution in ("faiss-cpu", "faiss-gpu"):
        try:
            version(distribution)
            installed.append(distribution)
        except PackageNotFoundError:
            pass
    if len(installed) > 1:
        raise ArrError(
            "faiss-cpu and faiss-gpu are both installed and overwrite each other's `faiss` package: "
            "pip uninstall -y faiss-cpu faiss-gpu, then install one of them"
        )
    try:
        import faiss
    except ImportError:
        raise ArrError("faiss is not installed: pip install 'arretrieve[cpu]' (or [gpu])") from None
    return faiss


@dataclass
class IndexParams:
    type: str
    nlist: int = 0
    pq_m: int = 0
    pq_bits: int = 8
    hnsw_m: int = HNSW_M
    ef_construction: int = HNSW_EF_CONSTRUCTION
    reduced_dim: int = 0
    train_size: int = 0
    seed: int = 0
    # IVF only: lists built in blocks and merged into a file that searches map (index/ondisk.py),
    # as the index would need more than `memory_budget` bytes in memory.
    on_disk: bool = False
    memory_budget: int = 0
    reason: str = ""
    # Search-time defaults; `arr search --nprobe/--ef-search/--rerank-factor` override them.
    search: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bytes_per_vector(index_type: str, dim: int, pq_m: int = 0, hnsw_m: int = HNSW_M, reduced_dim: int = 0) -> int:
    """Memory an index holds per vector (its codes or vectors, a graph's links, a list entry's id)."""
    return {
        "flat": 4 * dim,
        "hnsw": 4 * dim + 2 * hnsw_m * 4,
        "hnsw-pca": 4 * dim + 4 * (reduced_dim or default_reduced_dim(dim)) + 2 * hnsw_m * 4,
        "ivf-flat": 4 * dim + 8,
        "ivf-pq": pq_m + 8,
        "sq-fp16": 2 * dim,
        "sq-int8": dim,
    }[index_type]


def _pq_m(dim: int) -> int:
    """Sub-quantizers for IVF-PQ: about 8 dimensions each, dividing the dimension exactly."""
    return max(m for m in range(1, dim + 1) if dim % m == 0 and m <= max(1, dim // 8))


def check_index_type(index_type: str) -> None:
    if index_type not in INDEX_TYPES:
        raise ArrError(f"unknown index type {index_type!r}; choose from {', '.join(INDEX_TYPES)}")


def check_build_options(index_type: str, hnsw_m: int | None = None, ef_construction: int | None = None,
                        reduced_dim: int | None = None, reason: str = "") -> None:
    """Build options given for an index type they do not shape are refused, not silently ignored."""
    because = f" ({reason})" if reason else ""
    graph = {"--hnsw-m": hnsw_m, "--ef-construction": ef_construction}
    given = [flag for flag, value in graph.items() if value is not None]
    if given and index_type not in GRAPH_TYPES:
        raise ArrError(f"{' and '.join(given)} shape HNSW graphs, but this index is {index_type}{because}")
    if reduced_dim is not None and index_type != "hnsw-pca":
        raise ArrError(f"--reduced-dim sets the graph dimension of hnsw-pca, but this index is {index_type}{because}")
    too_small = [flag for flag, value in {**graph, "--reduced-dim": reduced_dim}.items() if value is not None and value < 1]
    if too_small:
        raise ArrError(f"{' and '.join(too_small)} must be at least 1")


def default_reduced_dim(dim: int) -> int:
    """A sixth of the dimensions (96 of 576), at least 32: measured on the Debian dev queries, 64
    lost recall and 128 only cost speed (BENCHMARKS.md, search speed)."""
    return min(dim, max(32, dim // 6))


@dataclass(frozen=True)
class IndexSpec:
    """The index a user asks for (`arr index` options): a type, or `auto` to pick by corpus size and
    `memory_budget` (bytes); `hnsw_m` and `ef_construction` shape an HNSW graph (more links and a
    deeper build search give higher recall at the same search depth, for a slower build);
    `reduced_dim` is the dimension hnsw-pca's graph works in. Options given for a type they do not
    shape are refused."""

    type: str = "auto"
    memory_budget: int | None = None
    seed: int = 0
    hnsw_m: int | None = None
    ef_construction: int | None = None
    reduced_dim: int | None = None

    def check(self) -> None:
        """Refuse what can be refused before any encoding (an explicit type's options)."""
        check_index_type(self.type)
        if self.type != "auto":
            check_build_options(self.type, self.hnsw_m, self.ef_construction, self.reduced_dim)


def plan_index(spec: IndexSpec, count: int, dim: int) -> IndexParams:
    """Concrete parameters for the requested index over `count` vectors of `dim` dimensions."""
    index_type, memory_budget, seed = spec.type, spec.memory_budget, spec.seed
    hnsw_m, ef_construction, reduced_dim = spec.hnsw_m, spec.ef_construction, spec.reduced_dim
    check_index_type(index_type)
    reason = f"requested {index_type}"
    if index_type == "auto":
        fits = lambda kind: memory_budget is None or count * bytes_per_vector(kind, dim, _pq_m(dim), hnsw_m or HNSW_M) <= memory_budget  # noqa: E731
        if count <= FLAT_LIMIT and fits("flat"):
            index_type, reason = "flat", f"auto: {count} vectors ≤ {FLAT_LIMIT}, exact search is fast enough"
        elif count <= HNSW_LIMIT and fits("hnsw"):
            index_type, reason = "hnsw", f"auto: {count} vectors, HNSW fits the memory budget"
        elif fits("sq-int8"):
            index_type, reason = "sq-int8", "auto: int8 scalar quantisation fits the memory budget"
        else:
            index_type, reason = "ivf-pq", "auto: IVF-PQ (with exact re-ranking), as int8 vectors exceed the memory budget"
    params = IndexParams(type=index_type, seed=seed, reason=reason)
    if index_type.startswith("ivf"):
        # ~4·sqrt(N) lists, each with >= 39 training points (FAISS's own minimum).
        params.nlist = max(1, min(int(4 * math.sqrt(count)), count // 39))
        params.search["nprobe"] = max(1, min(params.nlist, math.ceil(params.nlist / 8)))
    if index_type == "ivf-pq":
        params.pq_m = _pq_m(dim)
        # 2^bits centroids per sub-quantizer need >= 39 points each.
        params.pq_bits = max(1, min(8, int(math.log2(max(2, count // 39)))))
        params.search["rerank_factor"] = 10
    check_build_options(index_type, hnsw_m, ef_construction, reduced_dim, reason)
    if index_type == "hnsw":
        params.hnsw_m = hnsw_m or HNSW_M
        params.ef_construction = ef_construction or HNSW_EF_CONSTRUCTION
        params.search["ef_search"] = 128
    if index_type == "hnsw-pca":
        if reduced_dim is not None and reduced_dim >= dim:
            raise ArrError(f"--reduced-dim must be below the vectors' dimension ({dim}), got {reduced_dim}")
        params.hnsw_m = hnsw_m or HNSW_M
        params.ef_construction = ef_construction or HNSW_PCA_EF_CONSTRUCTION
        params.reduced_dim = reduced_dim or default_reduced_dim(dim)
        # Recall@10 0.987 at 13x BEIR's exact search on the Debian dev queries (BENCHMARKS.md).
        params.search.update(ef_search=80, rerank_factor=4)
    if index_type in TRAINED_TYPES:
        params.train_size = min(count, max(50_000, 64 * max(params.nlist, 1)))
    if memory_budget is not None:
        _fit_budget(params, count, dim, memory_budget)
    return params


def _fit_budget(params: IndexParams, count: int, dim: int, memory_budget: int) -> None:
    """An IVF index over the budget builds its lists on disk; any other type over it is refused."""
    needed = count * bytes_per_vector(params.type, dim, params.pq_m, params.hnsw_m, params.reduced_dim)
    if needed <= memory_budget:
        return
    over = f"{count} vectors need about {_megabytes(needed)} as {params.type}, over the {_megabytes(memory_budget)} budget"
    if not params.type.startswith("ivf"):
        raise ArrError(f"{over}; choose ivf-flat or ivf-pq (above the budget they build their inverted lists on disk), "
                       "or --index-type auto, or a larger --memory-budget")
    params.on_disk, params.memory_budget = True, memory_budget
    params.reason += f"; {over}: inverted lists built in blocks and merged on disk"


def _megabytes(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


def create_index(params: IndexParams, dim: int, sample: np.ndarray | None = None):
    """An empty index ready for `add`; trained types are fitted to `sample` (on a GPU if there is one)."""
    faiss = faiss_module()
    metric = faiss.METRIC_INNER_PRODUCT
    if params.type == "flat":
        return faiss.IndexFlatIP(dim)
    if params.type in GRAPH_TYPES:
        graph_dim = params.reduced_dim or dim
        index = faiss.IndexHNSWFlat(graph_dim, params.hnsw_m, metric)
        index.hnsw.efConstruction = params.ef_construction
        if params.type == "hnsw":
            return index
        projection = faiss.LinearTransform(dim, graph_dim, False)
        faiss.copy_array_to_vector(principal_axes(sample, graph_dim).ravel(), projection.A)
        projection.is_trained = True
        reduced = faiss.IndexPreTransform(index)
        reduced.prepend_transform(faiss.NormalizationTransform(graph_dim))
        reduced.prepend_transform(projection)
        return faiss.IndexRefineFlat(reduced)
    if params.type == "ivf-flat":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, params.nlist, metric)
    elif params.type == "ivf-pq":
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, params.nlist, params.pq_m, params.pq_bits, metric)
    else:
        quantizer = {"sq-fp16": faiss.ScalarQuantizer.QT_fp16, "sq-int8": faiss.ScalarQuantizer.QT_8bit}[params.type]
        index = faiss.IndexScalarQuantizer(dim, quantizer, metric)
    trainable = to_gpu_if_available(index)
    trainable.train(sample)
    return to_cpu(trainable)


def write_faiss_index(index, path: Path) -> None:
    """faiss's own writer reports a full disk from C (a traceback plus a line on stderr); through a
    Python file the error is an OSError that `write_atomic` turns into one line, and the file is whole."""
    faiss = faiss_module()
    write_atomic(path, lambda handle: faiss.write_index(index, faiss.PyCallbackIOWriter(handle.write)), binary=True)


def principal_axes(sample: np.ndarray, count: int) -> np.ndarray:
    """The `count` leading eigenvectors of the sample's second-moment matrix, as rows.

    Not centred PCA on purpose: embeddings share a large common direction, and the inner product
    of two projections approximates the original one only if that direction is kept (FAISS's
    centred PCA reached recall@10 0.73-0.79 where these axes reach 0.98-0.99 on the Debian dev
    queries; benchmarks/projection_choice.py).
    """
    sample = np.asarray(sample, dtype=np.float64)
    _, vectors = np.linalg.eigh(sample.T @ sample)  # ascending eigenvalues
    return np.ascontiguousarray(vectors[:, ::-1][:, :count].T, dtype=np.float32)


def gpu_count() -> int:
    faiss = faiss_module()
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def to_gpu_if_available(index):
    """Flat and IVF indexes move to all GPUs when faiss-gpu sees some; HNSW graphs stay on the CPU."""
    faiss = faiss_module()
    if gpu_count() == 0 or isinstance(index, (faiss.IndexHNSW, faiss.IndexRefine)):
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except (RuntimeError, AttributeError) as exc:
        log.warning("FAISS GPU unavailable (%s); searching on the CPU", exc)
        return index


def to_cpu(index):
    faiss = faiss_module()
    return faiss.index_gpu_to_cpu(index) if gpu_count() and hasattr(index, "getDevice") else index


def training_sample(shards: Iterable[np.ndarray], count: int, size: int, seed: int) -> np.ndarray:
    """`size` vectors chosen uniformly with a fixed seed (so a rebuild trains identically)."""
    wanted = np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False))
    picked, offset = [], 0
    for vectors in shards:
        inside = wanted[(wanted >= offset) & (wanted < offset + len(vectors))] - offset
        picked.append(vectors[inside])
        offset += len(vectors)
    return np.ascontiguousarray(np.concatenate(picked), dtype=np.float32)


def check_search_params(index_type: str, params: dict[str, int]) -> None:
    """Search settings an index type has no use for are refused, not silently ignored."""
    known = SEARCH_SETTINGS.get(index_type, ())
    unused = [name for name in params if name not in known]
    if unused:
        flags = " and ".join("--" + name.replace("_", "-") for name in unused)
        takes = ", ".join("--" + name.replace("_", "-") for name in known) or "no search settings"
        raise ArrError(f"{flags} {'does' if len(unused) == 1 else 'do'} not apply to a {index_type} index (it takes {takes})")
    too_small = ["--" + name.replace("_", "-") for name, value in params.items() if value < 1]
    if too_small:
        raise ArrError(f"{' and '.join(too_small)} must be at least 1")


def current_search_params(index, index_type: str) -> dict[str, int]:
    """The values of the index type's search settings as the index holds them now (what a search
    with settings for one call only goes back to)."""
    faiss = faiss_module()
    values: dict[str, int] = {}
    names = SEARCH_SETTINGS.get(index_type, ())
    if "nprobe" in names:
        values["nprobe"] = int(faiss.try_extract_index_ivf(index).nprobe)
    if "ef_search" in names:
        inner = faiss.downcast_index(index.base_index) if isinstance(index, faiss.IndexRefine) else index
        inner = faiss.downcast_index(inner.index) if isinstance(inner, faiss.IndexPreTransform) else inner
        values["ef_search"] = int(inner.hnsw.efSearch)
    if "rerank_factor" in names and isinstance(index, faiss.IndexRefine):
        values["rerank_factor"] = int(index.k_factor)
    return values


def apply_search_params(index, params: dict[str, int]) -> None:
    """nprobe, ef_search and hnsw-pca's rerank_factor, wherever they sit inside the index (hnsw-pca
    nests its graph; FAISS re-ranks its k × rerank_factor candidates itself)."""
    faiss = faiss_module()
    if "nprobe" in params:
        ivf = faiss.try_extract_index_ivf(index)
        (ivf if ivf is not None else index).nprobe = params["nprobe"]
    if "ef_search" in params:
        faiss.ParameterSpace().set_index_parameter(index, "efSearch", params["ef_search"])
    if "rerank_factor" in params and isinstance(index, faiss.IndexRefine):
        index.k_factor = float(params["rerank_factor"])
