"""`arr serve`: one process, each index opened and its model loaded once, a small JSON API.

    GET  /search?q=...&k=10&index=NAME&mode=...   one query → [{rank, score, id, title, text}, ...]
    POST /search {"queries": [...], "k": 10, "index": NAME, "mode": ...} → [{"query", "hits": [...]}, ...]
    GET  /indexes · GET /models · GET /health · OpenAPI docs at /docs

Hits are the objects `arr search --json` prints. A model is not re-entrant, so requests are
serialised: every model call (loading included) runs on one model thread, in arrival order, while
the event loop keeps answering; a batch request encodes its queries together. One thread also
keeps torch fast: CPU kernels called from several threads each start their own OpenMP team, and on
a small machine those teams fight for the cores (a k=10 query took twice as long). Bad requests
get 4xx JSON errors, never a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Literal, Sequence

from .api import Index
from .errors import ArrError
from .index import IndexStore
from .index.lexical import MODES
from .index.searcher import SearchOptions
from .registry import Registry

try:
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, Field, create_model
except ImportError:
    raise ArrError("arr serve needs FastAPI and uvicorn: pip install 'arretrieve[serve]'") from None

MAX_K = 1000
MAX_BATCH = 256
LOOPBACK = ("127.0.0.1", "localhost", "::1")



def _request_fields() -> dict:
    """The request fields of a search, derived from `SearchOptions` (the modes are `lexical.MODES`)."""
    types = {"k": Annotated[int, Field(ge=1, le=MAX_K)], "mode": Literal[MODES] | None,
             "collapse": bool | None, "nprobe": Annotated[int, Field(ge=1)] | None,
             "ef_search": Annotated[int, Field(ge=1)] | None, "rerank_factor": Annotated[int, Field(ge=1)] | None}
    return {f.name: (types[f.name], Field(f.default, description=f.metadata["help"]))
            for f in dataclasses.fields(SearchOptions)}


_INDEX_FIELD = (str | None, Field(None, description="index name (optional when one is served)"))
SearchQuery = create_model("SearchQuery", q=(str, Field(description="the query text")), index=_INDEX_FIELD,
                           **_request_fields())
SearchBatch = create_model("SearchBatch", queries=(list[str], Field(min_length=1, max_length=MAX_BATCH)),
                           index=_INDEX_FIELD, **_request_fields())


class ServedIndexes:
    """The indexes a server answers for, opened at start as `arretrieve.Index` objects (the API's):
    one loaded model per model entry and dtype, every model call on one thread."""

    def __init__(self, names: Sequence[str], store: IndexStore, registry: Registry, device: str = "auto"):
        if not names:
            names = store.names()
            if not names:
                store.resolve(None)  # the "no index here" error, naming where it looked
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="arr-model")
        self.indexes: dict[str, Index] = self.model_thread.submit(self._open, names, store, registry, device).result()

    @staticmethod
    def _open(names: Sequence[str], store: IndexStore, registry: Registry, device: str) -> dict[str, Index]:
        indexes, shared = {}, {}
        for name in names:
            index = Index(name, index_dir=store.root, registry=registry, device=device)
            searcher = index.searcher
            key = (searcher.entry.fingerprint, searcher.manifest.encoder["dtype"])
            if key not in shared:
                shared[key] = searcher.embedder  # loads the model now, not on the first request
                index.search("warm-up", k=1)  # first-call allocations and kernel choice
            searcher.embedder = shared[key]
            indexes[index.name] = index
        return indexes

    def pick(self, name: str | None) -> Index:
        if name is None:
            if len(self.indexes) == 1:
                return next(iter(self.indexes.values()))
            raise HTTPException(400, f"several indexes are served ({', '.join(self.indexes)}); name one with index=")
        if name not in self.indexes:
            raise HTTPException(404, f"no index {name!r} is served (served: {', '.join(self.indexes)})")
        return self.indexes[name]

    async def search(self, request: BaseModel, queries: list[str]) -> list:
        """`Index.search_many` on the model thread, with the request's options."""
        index = self.pick(request.index)
        options = {f.name: getattr(request, f.name) for f in dataclasses.fields(SearchOptions)}
        k = options.pop("k")
        return await asyncio.wrap_future(self.model_thread.submit(index.search_many, queries, k, **options))


def create_app(indexes: ServedIndexes) -> FastAPI:
    from . import __version__

    app = FastAPI(title="arretrieve", version=__version__,
                  description="Dense retrieval over arretrieve indexes: each index's model is loaded once.")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": problems}, status_code=422)

    @app.exception_handler(ArrError)
    async def arr_error(request: Request, exc: ArrError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server log"}, status_code=500)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "indexes": len(indexes.indexes)}

    @app.get("/indexes")
    def list_indexes() -> list[dict]:
        searchers = {name: index.searcher for name, index in indexes.indexes.items()}
        return [{"name": name, "model": s.manifest.model, "model_fingerprint": s.manifest.model_fingerprint,
                 "count": s.manifest.count, "dim": s.manifest.dim, "index_type": s.manifest.index_type,
                 "modes": list(MODES) if s.bm25 is not None else ["dense"], "default_mode": s.default_mode}
                for name, s in searchers.items()]

    @app.get("/models")
    def list_models() -> list[dict]:
        seen = {i.searcher.entry.name: i.searcher.entry for i in indexes.indexes.values()}
        return [{"name": e.name, "kind": e.kind, "dim": e.dim, "fingerprint": e.fingerprint,
                 "description": e.description} for e in seen.values()]

    @app.get("/search")
    async def search_one(request: Annotated[SearchQuery, Query()]) -> list[dict]:
        """The hits of one query, as `arr search --json` prints them."""
        results = await indexes.search(request, [request.q])
        return [hit.to_dict() for hit in results[0]]

    @app.post("/search")
    async def search_batch(body: SearchBatch) -> list[dict]:
        """The hits of each query, in order, as `arr search --queries --json` writes them."""
        results = await indexes.search(body, body.queries)
        return [{"query": q, "hits": [h.to_dict() for h in hits]} for q, hits in zip(body.queries, results)]

    return app


def serve(names: Sequence[str], *, host: str = "127.0.0.1", port: int = 8000, index_dir: Path | None = None,
          device: str = "auto", registry: Registry | None = None) -> None:
    """Open the indexes (every index in the store when none is named), load their models, and serve
    until interrupted."""
    import uvicorn

    served = ServedIndexes(list(names), IndexStore(index_dir), registry or Registry(), device)
    uvicorn.run(create_app(served), host=host, port=port, log_level="info")
