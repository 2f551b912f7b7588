"""BEIR datasets: a local folder, or a BEIR name downloaded (once) from BEIR's public mirror."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..corpus import CorpusSource
from ..errors import ArrError
from ..hashing import sha256_file
from ..home import beir_cache_dir
from ..corpus.queries import read_queries

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
# The usual small BEIR sets, evaluated when no dataset is named.
DEFAULT_DATASETS = ("scifact", "nfcorpus", "fiqa", "arguana", "scidocs")
KNOWN_DATASETS = DEFAULT_DATASETS + (
    "msmarco", "trec-covid", "nq", "hotpotqa", "dbpedia-entity", "fever", "climate-fever", "quora",
    "webis-touche2020", "cqadupstack", "trec-news", "robust04", "signal1m", "bioasq",
)


@dataclass
class BeirDataset:
    name: str
    folder: Path
    split: str
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    fingerprint: str

    @property
    def corpus(self) -> CorpusSource:
        return CorpusSource(self.folder)


def _download(name: str) -> Path:
    """BEIR's zip of `name`, fetched to a partial file and unpacked into the cache, so an interrupted
    download leaves nothing that looks like a dataset."""
    import shutil
    import tempfile
    import urllib.request
    import zipfile

    cache = beir_cache_dir()
    target = cache / name
    if (target / "corpus.jsonl").is_file():
        return target
    url = BEIR_URL.format(name=name)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{name}-download-") as tmp:
        archive = Path(tmp) / f"{name}.zip"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as handle:
                shutil.copyfileobj(response, handle, 1 << 20)
            with zipfile.ZipFile(archive) as unzipped:  # zipfile drops absolute and ".." parts of names
                unzipped.extractall(tmp)
        except (OSError, zipfile.BadZipFile) as exc:  # urllib's errors are OSErrors
            raise ArrError(
                f"cannot download the BEIR dataset {name!r} ({type(exc).__name__}); without a network, download "
                f"{url} elsewhere, unzip it and pass the folder instead"
            ) from None
        unpacked = Path(tmp) / name
        if not (unpacked / "corpus.jsonl").is_file():
            raise ArrError(f"the download of {name!r} did not contain {name}/corpus.jsonl")
        shutil.rmtree(target, ignore_errors=True)
        unpacked.rename(target)
    return target


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id → {document id: relevance} from a BEIR qrels TSV (header line optional)."""
    if not path.is_file():
        raise ArrError(f"{path} does not exist (is the split name right?)")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                parts = raw.decode("utf-8").removeprefix("\ufeff").rstrip("\r\n").split("\t")
            except UnicodeDecodeError:
                raise ArrError(f"{path}:{line_no}: not valid UTF-8") from None
            if parts == [""]:
                continue
            if line_no == 1 and parts[0] == "query-id":
                continue
            if len(parts) != 3:
                raise ArrError(f"{path}:{line_no}: expected query-id<TAB>corpus-id<TAB>score")
            try:
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
            except ValueError:
                raise ArrError(f"{path}:{line_no}: score {parts[2]!r} is not an integer") from None
    if not qrels:
        raise ArrError(f"{path} holds no judgements")
    return qrels


def dataset_labels(specs: Sequence[str]) -> list[str]:
    """A name per dataset of one run: a folder's name, or, where two folders share one (a/dev and
    b/dev), its parent's name too (a-dev, b-dev), so that their results and columns stay apart."""
    folders = [Path(s).expanduser().resolve() if Path(s).expanduser().is_dir() else None for s in specs]
    names = [folder.name if folder else spec.lower() for folder, spec in zip(folders, specs)]
    return [f"{folder.parent.name}-{name}" if folder and names.count(name) > 1 else name
            for folder, name in zip(folders, names)]


def load_dataset(spec: str, split: str = "test", label: str | None = None) -> BeirDataset:
    """A local BEIR folder, or a BEIR dataset name (downloaded and cached once); `label` names it
    (default: the folder's or the dataset's name)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        folder, name = path, path.resolve().name
    elif "/" in spec or spec.startswith("."):
        raise ArrError(f"{spec} does not exist")
    elif spec.lower() in KNOWN_DATASETS:
        folder, name = _download(spec.lower()), spec.lower()
    else:
        raise ArrError(f"{spec!r} is neither a folder nor a BEIR dataset name ({', '.join(KNOWN_DATASETS)})")
    for required in ("corpus.jsonl", "queries.jsonl"):
        if not (folder / required).is_file() and not (folder / (required + ".gz")).is_file():
            raise ArrError(f"{folder} is not a BEIR folder: {required} is missing")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    qrels = read_qrels(qrels_path)
    queries = read_queries(folder / "queries.jsonl")
    unknown_queries = sorted(set(qrels) - set(queries))
    if unknown_queries:
        raise ArrError(f"{qrels_path} names {len(unknown_queries)} query ids missing from queries.jsonl (e.g. {unknown_queries[0]!r})")
    corpus_ids = {document.id for document in CorpusSource(folder).documents()}
    unknown_docs = sorted({doc for rels in qrels.values() for doc in rels} - corpus_ids)
    if unknown_docs:
        raise ArrError(f"{qrels_path} names {len(unknown_docs)} document ids missing from the corpus (e.g. {unknown_docs[0]!r})")
    digest = hashlib.sha256()
    for file in [*CorpusSource(folder).files, folder / "queries.jsonl", qrels_path]:
        digest.update(sha256_file(file).encode())
    evaluated = {qid: queries[qid] for qid in queries if qid in qrels}
    return BeirDataset(label or name, folder, split, evaluated, qrels, digest.hexdigest())
