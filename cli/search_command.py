"""`arr search "query"`: top-k documents from an index, with the model that built it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .options import Device, IndexDir
from .output import console


def _printable(text: str) -> str:
    """Control characters (terminal escapes, bells) in data are shown, not obeyed."""
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in text)


def _snippet(text: str, width: int = 160) -> str:
    flat = _printable(" ".join(text.split()))
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _write(path: Optional[Path], text: str) -> None:
    if path is None:
        sys.stdout.write(text)
        return
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        from arretrieve.errors import ArrError

        raise ArrError(f"cannot write {path}: {exc.strerror}") from None


def search(
    query: Optional[str] = typer.Argument(None, help="The query text (or use --queries FILE)."),
    index: Optional[str] = typer.Option(None, "--index", "-i", help="Index name (default: the only index)."),
    k: int = typer.Option(10, "-k", min=1, help="How many results."),
    queries: Optional[Path] = typer.Option(None, "--queries", help="Batch search: BEIR queries.jsonl or id<TAB>text TSV."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the results here instead of stdout (a TREC run or JSON lines with --queries; JSON for one query)."),
    as_json: bool = typer.Option(False, "--json", help="JSON: a list of {rank, score, id, title, text}; with --queries, one line per query."),
    nprobe: Optional[int] = typer.Option(None, min=1, help="IVF lists to visit (IVF index types)."),
    ef_search: Optional[int] = typer.Option(None, min=1, help="HNSW search depth (hnsw, hnsw-pca)."),
    rerank_factor: Optional[int] = typer.Option(None, min=1, help="Re-score k × this many candidates exactly (ivf-pq, hnsw-pca)."),
    no_collapse: bool = typer.Option(False, "--no-collapse", help="On a chunked index, list chunks instead of one hit per document."),
    mode: Optional[str] = typer.Option(None, "--mode", help="dense, bm25 or hybrid (default: hybrid when the index has a BM25 side, else dense)."),
    where: Optional[str] = typer.Option(None, "--where", help='Only documents whose metadata match, as JSON: \'{"section": "utils"}\' or \'{"year": {"gte": 2020}}\'.'),
    explain: bool = typer.Option(False, "--explain", help="For each hit, what the model's decoder writes from its compressed states: what the model read from it (AutoRegEmbed models)."),
    rerank: Optional[str] = typer.Option(None, "--rerank", help="likelihood: rescore the top hits by the log-likelihood of the query under the model's decoder after each hit's states, fused with the first-stage score (AutoRegEmbed models; seconds a query on a CPU)."),
    rerank_depth: Optional[int] = typer.Option(None, "--rerank-depth", min=1, help="With --rerank: how many top hits are rescored (default 20; at least k are)."),
    index_dir: Optional[Path] = IndexDir,
    device: str = Device,
) -> None:
    """Search an index and print rank, score, id, title and a snippet."""
    from arretrieve.api import Index
    from arretrieve.errors import ArrError
    from arretrieve.index.searcher import check_queries

    if (query is None) == (queries is None):
        raise ArrError("give either a query or --queries FILE")
    if explain and queries is not None and not as_json:
        raise ArrError("--explain with --queries needs --json: a TREC run has no place for the explanations")
    if query is not None:
        check_queries([query])  # before the index and its model load
    from arretrieve.index.searcher import SearchOptions

    SearchOptions(k=k, rerank=rerank, rerank_depth=rerank_depth)  # a bad reranker is refused before loading too
    conditions = None
    if where is not None:
        from arretrieve.index.filters import check_where

        try:
            conditions = json.loads(where)
        except json.JSONDecodeError as exc:
            raise ArrError(f"--where is not JSON ({exc.msg} at column {exc.colno}): {where}") from None
        check_where(conditions)
    opened = Index(index, index_dir=index_dir, device=device)
    options = {"mode": mode, "collapse": False if no_collapse else None, "nprobe": nprobe, "ef_search": ef_search,
               "rerank_factor": rerank_factor, "where": conditions, "explain": explain, "rerank": rerank,
               "rerank_depth": rerank_depth}
    manifest = opened.manifest
    if queries is not None:
        from arretrieve.corpus.queries import read_queries
        from arretrieve.evaluation.run_file import write_trec_run

        batch = read_queries(queries)
        results = dict(zip(batch, opened.search_many(list(batch.values()), k, **options)))
        if as_json:  # JSON lines: {"query_id", "query", "hits": [...]}
            _write(output, "".join(json.dumps({"query_id": qid, "query": batch[qid], "hits": [h.to_dict() for h in hits]},
                                              ensure_ascii=False) + "\n" for qid, hits in results.items()))
        else:
            write_trec_run(results, output, tag=f"arr-{manifest.name}")
        if output is not None:
            console.print(f"wrote the hits of {len(results)} queries to {output}", highlight=False)
        return
    hits = opened.search(query, k, **options)
    if as_json or output:
        _write(output, json.dumps([hit.to_dict() for hit in hits], ensure_ascii=False, indent=2) + "\n")
        if output is not None:
            console.print(f"wrote {len(hits)} hits to {output}", highlight=False)
        return
    from rich.table import Table

    columns = ("rank", "score", "id", "title", "snippet", *(("read by the model",) if explain else ()))
    table = Table(*columns, title=f"{manifest.name} · {manifest.model}")
    for hit in hits:
        table.add_row(str(hit.rank), f"{hit.score:.4f}", _printable(hit.id), _printable(hit.title), _snippet(hit.text),
                      *((_printable(hit.explanation),) if explain else ()))
    console.print(table)
