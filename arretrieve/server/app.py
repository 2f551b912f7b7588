"""`arr serve`: one process, each index opened and its model loaded once, a small JSON API.

    GET  /search?q=...&k=10&index=NAME&mode=...   one query → [{rank, score, id, title, text}, ...]
    POST /search {"queries": [...], "k": 10, "index": NAME, "mode": ...} → [{"query", "hits": [...]}, ...]
    GET  /indexes · GET /models · GET /health · OpenAPI docs at /docs

Hits are the objects `arr search --json` prints. A model is not re-entrant, so requests are
serialised: every model call (loading included) runs on one model thread (`ModelQueue`), in
arrival order, while the event loop keeps answering; requests that waited together for the same
index and options are searched as one batch, so a queue of single queries drains at batch speed. One thread also
keeps torch fast: CPU kernels called from several threads each start their own OpenMP team, and on
a small machine those teams fight for the cores (a k=10 query took twice as long). Bad requests
get 4xx JSON errors, never a traceback, and no error names a file of the server's machine.

One client must not stall the others (`ServerLimits`): the queries waiting for the model thread
are bounded (beyond that, 503 and Retry-After), a request whose client has gone is dropped before
it reaches the model, batches, query lengths and bodies are capped, and a Host header that names
another machine than the loopback one is refused (DNS rebinding). Each search first checks that
its index is still the generation it opened: after `arr index --add` or `--overwrite` the new one
is opened and swapped in whole, so a response never mixes one generation's vectors with another's
documents.
"""

import asyncio
import dataclasses
import hmac
import json
import logging
import os
import re
import threading
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Sequence

from ..api import Index
from ..errors import ArrError
from ..index import IndexStore
from ..index.lexical import MODES
from ..index.manifest import MANIFEST_FILE
from ..index.searcher import RERANKERS, SearchOptions, check_queries
from ..registry import Registry
from .limits import LOOPBACK, TOKEN_VARIABLE, ServerLimits

try:
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, Field, Json, create_model
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError:
    raise ArrError("arr serve needs FastAPI and uvicorn: pip install 'arretrieve[serve]'") from None

log = logging.getLogger(__name__)

MAX_K = 1000
def _request_fields(query_string: bool) -> dict:
    """The request fields of a search, derived from `SearchOptions` (the modes are `lexical.MODES`);
    in a query string `where` is JSON text."""
    types = {"k": Annotated[int, Field(ge=1, le=MAX_K)], "mode": Literal[MODES] | None,
             "collapse": bool | None, "nprobe": Annotated[int, Field(ge=1)] | None,
             "ef_search": Annotated[int, Field(ge=1)] | None, "rerank_factor": Annotated[int, Field(ge=1)] | None,
             "where": (Json[dict[str, Any]] if query_string else dict[str, Any]) | None, "explain": bool,
             "rerank": Literal[RERANKERS] | None, "rerank_depth": Annotated[int, Field(ge=1, le=MAX_K)] | None}
    return {f.name: (types[f.name], Field(f.default, description=f.metadata["help"]))
            for f in dataclasses.fields(SearchOptions)}


_INDEX_FIELD = (str | None, Field(None, description="index name (optional when one is served)"))


def request_models(limits: ServerLimits) -> tuple[type[BaseModel], type[BaseModel]]:
    """The GET and POST request models, with this server's caps in their schema."""
    query = Annotated[str, Field(max_length=limits.max_query_chars)]
    one = create_model("SearchQuery", q=(query, Field(description="the query text")), index=_INDEX_FIELD,
                       **_request_fields(query_string=True))
    batch = create_model("SearchBatch", queries=(list[query], Field(min_length=1, max_length=limits.max_batch)),
                         index=_INDEX_FIELD, **_request_fields(query_string=False))
    return one, batch


class HitOut(BaseModel):
    rank: int
    score: float
    id: str
    title: str
    text: str
    chunk: str | None = Field(None, description="the chunk that matched, on a chunked index")
    metadata: dict[str, Any] | None = Field(None, description="stored fields, on an index that has them")
    explanation: str | None = Field(None, description="with explain: what the model's decoder writes from the hit's states")


class BatchOut(BaseModel):
    query: str
    hits: list[HitOut]


class IndexOut(BaseModel):
    name: str
    model: str
    model_fingerprint: str
    count: int
    dim: int
    index_type: str
    modes: list[str]
    default_mode: str


class ModelOut(BaseModel):
    name: str
    kind: str
    dim: int
    fingerprint: str
    description: str


class HealthOut(BaseModel):
    status: str
    indexes: int
    queued: int = Field(description="queries waiting for the model now")


class DocumentOut(BaseModel):
    id: str
    title: str
    text: str
    parent: str = Field(description="the document a chunk was cut from (its own id when not chunked)")


ENCODING_ROLES = ("query", "document", "symmetric")  # the others are training's
_MODEL_FIELD = (str | None, Field(None, description="a served model's name (optional when one is served)"))


def encode_models(limits: ServerLimits) -> tuple[type[BaseModel], type[BaseModel]]:
    """The /encode and /similarity request models, with this server's caps."""
    text = Annotated[str, Field(min_length=1, max_length=limits.max_query_chars)]
    texts = (list[text], Field(min_length=1, max_length=limits.max_batch))
    encode = create_model("EncodeRequest", texts=texts, model=_MODEL_FIELD,
                          role=(Literal[ENCODING_ROLES], Field("query", description="the prompt the texts get")))
    similarity = create_model("SimilarityRequest", queries=texts, documents=texts, model=_MODEL_FIELD)
    return encode, similarity


class DocumentIn(BaseModel):
    id: str = Field(min_length=1)
    text: str
    title: str = ""
    metadata: dict[str, str | int | float | bool | None] | None = Field(
        None, description="fields stored for where= filters")


def write_models(limits: ServerLimits) -> tuple[type[BaseModel], type[BaseModel]]:
    """The /add and /delete request models, with this server's caps."""
    add = create_model("AddRequest", index=_INDEX_FIELD,
                       documents=(list[DocumentIn], Field(min_length=1, max_length=limits.max_batch)),
                       upsert=(bool, Field(False, description="a document whose id is in the index replaces it")))
    delete = create_model("DeleteRequest", index=_INDEX_FIELD,
                          ids=(list[Annotated[str, Field(min_length=1)]], Field(min_length=1)),
                          missing_ok=(bool, Field(False, description="ids not in the index are ignored, not refused")))
    return add, delete


class WriteOut(BaseModel):
    index: str
    count: int = Field(description="documents (chunks, in a chunked index) a search can return now")
    generation: int


class EncodeOut(BaseModel):
    model: str
    dim: int
    vectors: list[list[float]]


class SimilarityOut(BaseModel):
    model: str
    scores: list[list[float]] = Field(description="cosine of each query (row) with each document (column)")


# An absolute path in an error message: the server's files are not its clients' business.
_PATH = re.compile(r"(?<![\w.])/(?:[^\s'\"/]+/)*([^\s'\"/;,)]+)")


def public_message(message: str) -> str:
    return _PATH.sub(lambda m: m.group(1), message)


async def _disconnect(client: Request) -> None:
    """Returns when the client goes away (waiting on the connection, not polling it)."""
    while (await client.receive())["type"] != "http.disconnect":
        pass


class Busy(Exception):
    """The queue of queries waiting for the model is full."""


class ModelQueue:
    """The one thread every model call runs on. Searches that waited together for the same index
    and options run as one batch (their queries encoded together), in order of arrival; a search
    whose future was cancelled before its turn is skipped."""

    def __init__(self):
        self._pending: deque = deque()
        self._ready = threading.Condition()
        threading.Thread(target=self._loop, name="arr-model", daemon=True).start()

    def call(self, function: Callable[[], object]) -> Future:
        return self._put(None, function)

    def search(self, key: tuple, queries: list[str], run: Callable[[tuple, list[str]], list]) -> Future:
        """`run(key, queries)` gives one result per query; jobs of one key may share a call."""
        return self._put(key, (queries, run))

    def _put(self, key, work) -> Future:
        future: Future = Future()
        with self._ready:
            self._pending.append((key, work, future))
            self._ready.notify()
        return future

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._pending:
                    self._ready.wait()
                jobs, self._pending = list(self._pending), deque()
            groups: dict = {}
            for key, work, future in jobs:
                if future.set_running_or_notify_cancel():  # False: its client left, nothing to do
                    groups.setdefault(key if key is not None else object(), []).append((key, work, future))
            for group in groups.values():
                self._run(group)

    @staticmethod
    def _run(group: list) -> None:
        key, work, _ = group[0]
        try:
            if key is None:
                group[0][2].set_result(work())
                return
            queries = [q for _, (job_queries, _), _ in group for q in job_queries]
            results = iter(work[1](key, queries))
            for _, (job_queries, _), future in group:
                future.set_result([next(results) for _ in job_queries])
        except BaseException as exc:  # noqa: BLE001 (each waiting request reports it, as a 4xx or 500)
            for _, _, future in group:
                if not future.done():
                    future.set_exception(exc)


class ServedIndexes:
    """The indexes a server answers for, opened at start as `arretrieve.Index` objects (the API's):
    one loaded model per model entry and dtype, every model call on one thread. Before each search
    the index's manifest is checked: a new generation is opened and swapped in whole."""

    def __init__(self, names: Sequence[str], store: IndexStore, registry: Registry, device: str = "auto",
                 limits: ServerLimits | None = None):
        if not names:
            names = store.names()
            if not names:
                store.resolve(None)  # the "no index here" error, naming where it looked
        self.store, self.registry, self.device = store, registry, device
        self.limits = limits or ServerLimits()
        self.model_queue = ModelQueue()
        self._queued, self._queue_lock = 0, threading.Lock()
        self._models: dict[tuple, object] = {}
        self._opened: dict[str, tuple] = {}
        self.indexes: dict[str, Index] = self.model_queue.call(lambda: self._open_all(names)).result()

    def _open_all(self, names: Sequence[str]) -> dict[str, Index]:
        indexes = {}
        for name in names:
            index = self._open(name)
            indexes[index.name] = index
        return indexes

    def _generation(self, name: str) -> tuple:
        stat = os.stat(self.store.path(name) / MANIFEST_FILE)
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def _open(self, name: str) -> Index:
        """Open an index and give it the loaded model its entry and dtype share (loading it once)."""
        generation = self._generation(name)
        index = Index(name, index_dir=self.store.root, registry=self.registry, device=self.device)
        searcher = index.searcher
        key = (searcher.entry.fingerprint, searcher.manifest.encoder["dtype"])
        if key not in self._models:
            self._models[key] = searcher.embedder  # loads the model now, not on the first request
            index.search("warm-up", k=1)  # first-call allocations and kernel choice
        searcher.embedder = self._models[key]
        self._opened[index.name] = generation
        return index

    def _current(self, name: str) -> Index:
        """The served index, reopened first if a writer committed a new generation (model thread)."""
        index = self.indexes[name]
        try:
            changed = self._generation(name) != self._opened[name]
        except OSError:  # removed meanwhile: keep answering from what is open
            return index
        if changed:
            try:
                fresh = self._open(name)
            except ArrError as exc:
                log.warning("index %r changed but cannot be opened (%s); still serving the open one", name, exc)
                self._opened[name] = self._generation(name)  # not retried on every request
                return index
            log.info("index %r changed (%d → %d documents); serving the new generation", name, len(index), len(fresh))
            self.indexes[name] = index = fresh
        return index

    @property
    def queued(self) -> int:
        return self._queued

    def model(self, name: str | None):
        """A loaded embedder by its entry's name (None: the only one)."""
        loaded = {embedder.entry.name: embedder for embedder in self._models.values()}
        if name is None:
            if len(loaded) == 1:
                return next(iter(loaded.values()))
            raise HTTPException(400, f"several models are served ({', '.join(loaded)}); name one with model=")
        if name not in loaded:
            raise HTTPException(404, f"no model {name!r} is served (served: {', '.join(loaded)})")
        return loaded[name]

    async def write(self, name: str, change: Callable[[Index], object], count: int) -> WriteOut:
        """An add, upsert or delete of a served index, on the model thread (its model encodes the
        rows); the index then serves the new generation, which it has opened itself."""
        def run() -> WriteOut:
            index = self._current(name)
            change(index)
            self._opened[name] = self._generation(name)
            return WriteOut(index=name, count=len(index), generation=index.manifest.generation)

        return await self.on_model_thread(run, count)

    async def on_model_thread(self, function: Callable[[], object], count: int = 1):
        """Any other model call, queued and bounded like a search of `count` queries."""
        self._admit(count)
        future = self.model_queue.call(function)
        future.add_done_callback(lambda _: self._release(count))
        return await asyncio.wrap_future(future)

    def pick(self, name: str | None) -> str:
        if name is None:
            if len(self.indexes) == 1:
                return next(iter(self.indexes))
            raise HTTPException(400, f"several indexes are served ({', '.join(self.indexes)}); name one with index=")
        if name not in self.indexes:
            raise HTTPException(404, f"no index {name!r} is served (served: {', '.join(self.indexes)})")
        return name

    def _admit(self, count: int) -> None:
        with self._queue_lock:
            if self._queued + count > self.limits.max_queued:
                raise Busy()
            self._queued += count

    def _release(self, count: int) -> None:
        with self._queue_lock:
            self._queued -= count

    async def search(self, request: BaseModel, queries: list[str], client: Request) -> list | None:
        """`Index.search_many` on the model thread, with the request's options; None when the
        client left before its turn came (the work is then never done)."""
        name = self.pick(request.index)
        check_queries(queries)  # here, not in a shared batch: one bad query fails only its own request
        options = {f.name: getattr(request, f.name) for f in dataclasses.fields(SearchOptions)}
        k = options.pop("k")
        self._admit(len(queries))
        key = (name, k, json.dumps(options, sort_keys=True))  # hashable, `where` included
        future = self.model_queue.search(key, queries, self._search_batch)
        future.add_done_callback(lambda _: self._release(len(queries)))
        waiting, gone = asyncio.wrap_future(future), asyncio.ensure_future(_disconnect(client))
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done() and future.cancel():  # the client left before its turn: never computed
            return None
        gone.cancel()
        return await waiting

    def _search_batch(self, key: tuple, queries: list[str]) -> list:
        name, k, options = key
        return self._current(name).search_many(queries, k, **json.loads(options))

def create_app(indexes: ServedIndexes, token: str | None = None) -> "GuardedApp":
    """The application: FastAPI's routes behind the Host, body-size and (with `token`) bearer-token checks."""
    from .. import __version__

    limits = indexes.limits
    SearchQuery, SearchBatch = request_models(limits)
    EncodeRequest, SimilarityRequest = encode_models(limits)
    AddRequest, DeleteRequest = write_models(limits)
    app = FastAPI(title="arretrieve", version=__version__, docs_url=None, redoc_url=None,
                  description="Dense retrieval over arretrieve indexes: each index's model is loaded once.")
    _offline_docs(app)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own (body parsing, unknown routes) too
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        def problem(error: dict) -> str:
            where = ".".join(str(p) for p in error["loc"][1:])
            if not where and error["loc"][:1] == ("body",):
                return f"the body must be a JSON object (content-type: application/json): {error['msg']}"
            return f"{where or error['loc'][0]}: {error['msg']}"

        return JSONResponse({"error": "; ".join(problem(e) for e in exc.errors())}, status_code=422)

    @app.exception_handler(ArrError)
    async def arr_error(request: Request, exc: ArrError):
        return JSONResponse({"error": public_message(str(exc))}, status_code=400)

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy):
        return JSONResponse({"error": f"the server is busy ({limits.max_queued} queries are waiting); retry shortly"},
                            status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("internal error on %s", request.url.path, exc_info=exc)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server log"}, status_code=500)

    @app.get("/health")
    def health() -> HealthOut:
        return HealthOut(status="ok", indexes=len(indexes.indexes), queued=indexes.queued)

    @app.get("/indexes")
    def list_indexes() -> list[IndexOut]:
        searchers = {name: index.searcher for name, index in indexes.indexes.items()}
        return [IndexOut(name=name, model=s.manifest.model, model_fingerprint=s.manifest.model_fingerprint,
                         count=s.manifest.count, dim=s.manifest.dim, index_type=s.manifest.index_type,
                         modes=list(MODES) if s.bm25 is not None else ["dense"], default_mode=s.default_mode)
                for name, s in searchers.items()]

    @app.get("/models")
    def list_models() -> list[ModelOut]:
        seen = {i.searcher.entry.name: i.searcher.entry for i in indexes.indexes.values()}
        return [ModelOut(name=e.name, kind=e.kind, dim=e.dim, fingerprint=e.fingerprint, description=e.description)
                for e in seen.values()]

    @app.get("/search", response_model_exclude_none=True)
    async def search_one(request: Annotated[SearchQuery, Query()], client: Request) -> list[HitOut]:
        """The hits of one query, as `arr search --json` prints them."""
        results = await indexes.search(request, [request.q], client)
        return [] if results is None else [HitOut(**hit.to_dict()) for hit in results[0]]

    @app.post("/search", response_model_exclude_none=True)
    async def search_batch(body: SearchBatch, client: Request) -> list[BatchOut]:
        """The hits of each query, in order, as `arr search --queries --json` writes them."""
        results = await indexes.search(body, body.queries, client)
        return [] if results is None else [BatchOut(query=q, hits=[HitOut(**h.to_dict()) for h in hits])
                                           for q, hits in zip(body.queries, results)]

    @app.get("/doc/{doc_id:path}")
    async def document(doc_id: str, index: Annotated[str | None, Query(description="index name")] = None) -> DocumentOut:
        """A stored document (or chunk) by its id, as indexed."""
        found = indexes.indexes[indexes.pick(index)].get(doc_id)
        if found is None:
            raise HTTPException(404, f"no document {doc_id!r} in index {indexes.pick(index)!r}")
        return DocumentOut(id=found.id, title=found.title, text=found.text, parent=found.doc_id)

    @app.post("/add")
    async def add(body: AddRequest) -> WriteOut:
        """Encode and append documents (with `upsert`, replacing those of the same ids), in one commit."""
        name = indexes.pick(body.index)
        documents = body.documents
        metadata = [d.metadata or {} for d in documents] if any(d.metadata for d in documents) else None

        def change(index: Index) -> None:
            (index.upsert if body.upsert else index.add)([d.text for d in documents], ids=[d.id for d in documents],
                                                         titles=[d.title for d in documents], metadata=metadata)

        return await indexes.write(name, change, len(documents))

    @app.post("/delete")
    async def delete(body: DeleteRequest) -> WriteOut:
        """Remove documents by id, in one commit."""
        return await indexes.write(indexes.pick(body.index),
                                   lambda index: index.delete(body.ids, missing_ok=body.missing_ok), 1)

    @app.post("/encode")
    async def encode(body: EncodeRequest) -> EncodeOut:
        """Vectors of the texts with a served model (L2-normalised, as its indexes hold them)."""
        embedder = indexes.model(body.model)
        vectors = await indexes.on_model_thread(lambda: embedder.encode(body.texts, role=body.role), len(body.texts))
        return EncodeOut(model=embedder.entry.name, dim=int(vectors.shape[1]), vectors=vectors.tolist())

    @app.post("/similarity")
    async def similarity(body: SimilarityRequest) -> SimilarityOut:
        """Cosine of each query (query prompt) with each document (document prompt)."""
        embedder = indexes.model(body.model)

        def scores():
            return embedder.similarity(embedder.encode_query(body.queries), embedder.encode_document(body.documents))

        result = await indexes.on_model_thread(scores, len(body.queries) + len(body.documents))
        return SimilarityOut(model=embedder.entry.name, scores=result.tolist())

    return GuardedApp(app, limits, token)


def _offline_docs(app: FastAPI) -> None:
    """/docs from Swagger UI's files installed with the server (swagger-ui-bundle), not a CDN: the
    page works on a machine without a network."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/static", StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="arretrieve",
                                   swagger_js_url="/docs/static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/static/swagger-ui.css",
                                   swagger_favicon_url="/docs/static/favicon-32x32.png")


# Reachable without the token: whether the server is up, and its API's description.
OPEN_PATHS = ("/health", "/docs", "/openapi.json")


class GuardedApp:
    """The checks made before FastAPI reads a request (ASGI middleware): the Host header, then the
    body's size, declared or streamed."""

    def __init__(self, app: FastAPI, limits: ServerLimits, token: str | None = None):
        self.app, self.limits = app, limits
        self.hosts = {h.lower() for h in (*LOOPBACK, *limits.allowed_hosts)}
        self.any_host = False
        self.expected = f"Bearer {token}".encode() if token else None

    def listening_on(self, host: str) -> None:
        """A server bound beyond loopback answers to any name unless `allowed_hosts` narrows it."""
        self.any_host = host not in LOOPBACK and not self.limits.allowed_hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = _host_name(headers.get("host", ""))
        if not self.any_host and host not in self.hosts:
            return await _refuse(send, 421, f"this server does not answer to the host {host!r}")
        path = scope.get("path", "")
        open_path = path in OPEN_PATHS or path.startswith("/docs/static/")
        if self.expected and not open_path and not hmac.compare_digest(
                headers.get("authorization", "").encode("latin-1"), self.expected):  # constant time
            return await _refuse(send, 401, "this server needs its token: Authorization: Bearer TOKEN",
                                 [(b"www-authenticate", b"Bearer")])
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            return await _refuse(send, 413, f"the body is over {self.limits.max_body_bytes} bytes")
        seen, refused = 0, False

        async def counted():
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limits.max_body_bytes and not refused:
                    refused = True  # answered here; the app hears that the client left
                    await _refuse(send, 413, f"the body is over {self.limits.max_body_bytes} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message):
            if not refused:
                await send(message)

        await self.app(scope, counted, unless_refused)


def _host_name(header: str) -> str:
    """The name in a Host header, without its port ("[::1]:8000" → "::1")."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


async def _refuse(send, status: int, message: str, headers: list | None = None) -> None:
    body = JSONResponse({"error": message}).body
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def serve(names: Sequence[str], *, host: str = "127.0.0.1", port: int = 8000, index_dir: Path | None = None,
          device: str = "auto", registry: Registry | None = None, limits: ServerLimits | None = None,
          token: str | None = None, no_auth: bool = False) -> None:
    """Open the indexes (every index in the store when none is named), load their models, and serve
    until interrupted. Beyond loopback a token is required unless `no_auth` says otherwise."""
    import uvicorn

    check_exposure(host, token, no_auth)
    uvicorn.run(build_app(names, IndexStore(index_dir), registry or Registry(), device, limits, token, host),
                host=host, port=port, log_level="info")


def check_exposure(host: str, token: str | None, no_auth: bool) -> None:
    if host not in LOOPBACK and not token and not no_auth:
        raise ArrError(f"listening on {host} lets other machines in: give a token (--token or ${TOKEN_VARIABLE}), "
                       "or pass --no-auth to serve without one")
    if token and no_auth:
        raise ArrError("--no-auth and a token contradict each other; give one")


def build_app(names: Sequence[str], store: IndexStore, registry: Registry, device: str, limits: ServerLimits | None,
              token: str | None, host: str) -> GuardedApp:
    """What `arr serve` runs, and each `arr serve --ray` replica builds for itself: the indexes
    opened, their models loaded, the app guarding them for `host`."""
    app = create_app(ServedIndexes(list(names), store, registry, device, limits), token)
    app.listening_on(host)
    return app
