"""`arr data debian-desc OUT`: the Debian package-description retrieval and training set, built
from apt's own package lists, byte-identical from run to run.

The query is a package's one-line short description (its synopsis), the document its long
description. Input: an apt lists folder holding, for one suite and component (default bookworm
main), the English `Translation-en`, the `binary-<arch>_Packages` files and the suite's
`InRelease`. Output under OUT:

    test/ dev/ full/   BEIR folders: corpus.jsonl (_id, title, text), queries.jsonl, qrels/<split>.tsv
    train/             compression.jsonl (context, instruction, output), pairs.jsonl, triplets.jsonl
    meta/              docs.jsonl (the packages behind each document), queries.jsonl, stats.json
    SHA256SUMS         of every file above; provenance.json: the inputs, written last

(train/*, meta/*.jsonl and full/corpus.jsonl gzip'ed when the plain total exceeds 40 MB.)
Construction: long descriptions are cleaned (' .' lines become paragraph breaks), records of
fewer than 15 words or only packaging boilerplate are dropped, documents are deduplicated by exact
text (id 'd' + sha1[:12]). Sources sharing an identical long or short description are merged into
one cluster, and a cluster goes to train/dev/test by sha1(salt + its smallest source name) % 100
(< 80 train, < 90 dev, else test), so no identical text crosses splits. Queries are distinct
non-generic short descriptions (id 'q' + sha1[:12]) whose relevant documents are all documents
with that short description; a query found verbatim (case-insensitive) in a relevant document is
not used for dev or test. From Debian 12.15's lists the checksums equal `debian-desc-12.15.sha256`
beside this file, the set every figure in BENCHMARKS.md was measured on.
"""

from __future__ import annotations

import bz2
import collections
import glob
import gzip
import hashlib
import itertools
import json
import lzma
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..errors import ArrError
from ..home import write_folder_atomic

SPLIT_SALT = "debian-desc-split-v1"
MIN_WORDS = 15  # drop documents whose long description has fewer words
MIN_CONTENT_WORDS = 5  # drop documents with fewer words outside boilerplate sentences
MAX_TEST_QUERIES = 2000
MAX_DEV_QUERIES = 1000
GZIP_TOTAL_LIMIT = 40 * 1000 * 1000  # bytes; above it the big files are gzip'ed
DEFAULT_SEED = 13
REFERENCE_SUMS = Path(__file__).with_name("debian-desc-12.15.sha256")
PROVENANCE_FILE = "provenance.json"

INSTRUCTIONS = [
    "Write a one-line summary of this package description.",
    "Summarize this package description in one line.",
    "Give a one-line synopsis of the package described below.",
    "In a single short line, state what this package is.",
    "Condense this software package description into a one-line summary.",
]


# ----------------------------------------------------------------------------- apt lists

@dataclass(frozen=True)
class AptLists:
    """The input files of one suite and component."""

    translation: Path
    packages: tuple[Path, ...]
    release: Path | None
    suite: str
    component: str


def read_list_file(path: Path) -> str:
    """The text of an apt lists file (.lz4, .gz, .xz, .bz2 or plain)."""
    name = path.name
    try:
        if name.endswith(".lz4"):
            data = _read_lz4(path)
        elif name.endswith(".gz"):
            data = gzip.decompress(path.read_bytes())
        elif name.endswith(".xz"):
            data = lzma.decompress(path.read_bytes())
        elif name.endswith(".bz2"):
            data = bz2.decompress(path.read_bytes())
        else:
            data = path.read_bytes()
    except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        raise ArrError(f"cannot read {path}: {exc}") from None
    return data.decode("utf-8", errors="replace")


def _read_lz4(path: Path) -> bytes:
    try:
        import lz4.frame  # type: ignore[import-not-found]

        return lz4.frame.decompress(path.read_bytes())
    except ImportError:
        if not shutil.which("lz4"):
            raise ArrError(f"{path}: reading apt's .lz4 lists needs the lz4 command (apt-get install lz4) "
                           "or the lz4 Python package") from None
        done = subprocess.run(["lz4", "-dc", str(path)], capture_output=True)
        if done.returncode:
            raise ArrError(f"{path}: lz4 could not decompress it ({done.stderr.decode(errors='replace').strip()})")
        return done.stdout


_COMPRESSED = (".lz4", ".gz", ".xz", ".bz2")


def _glob_lists(folder: Path, pattern: str) -> list[Path]:
    found = []
    for path in sorted(glob.glob(str(folder / pattern))):
        name = os.path.basename(path)
        if name.endswith(_COMPRESSED) or re.search(r"(Translation-en|Packages|InRelease|Release)$", name):
            found.append(Path(path))
    return found


def find_apt_lists(folder: Path, suite: str = "bookworm", component: str = "main", arch: str = "amd64") -> AptLists:
    """The Translation-en, Packages and InRelease files of `suite`/`component` in an apt lists folder."""
    if not folder.is_dir():
        raise ArrError(f"{folder} is not an apt lists folder")
    translations = _glob_lists(folder, f"*_dists_{suite}_{component}_i18n_Translation-en*")
    packages = _glob_lists(folder, f"*_dists_{suite}_{component}_binary-{'*' if arch == 'any' else arch}_Packages*")
    release = _glob_lists(folder, f"*_dists_{suite}_InRelease") or _glob_lists(folder, f"*_dists_{suite}_Release")
    if len(translations) != 1:
        raise ArrError(f"expected one Translation-en file for {suite}/{component} in {folder}, found {len(translations)}: "
                       "fetch the lists with --fetch, or run `apt-get -o Acquire::Languages=en update`")
    if not packages:
        raise ArrError(f"no binary-{arch} Packages file for {suite}/{component} in {folder} (--arch any takes every one)")
    return AptLists(translations[0], tuple(packages), release[0] if release else None, suite, component)


def fetch_apt_lists(folder: Path) -> Path:
    """Run `apt-get update` with this machine's apt sources into a private lists folder (English
    translations included), leaving the system's lists alone; returns the lists folder."""
    if not shutil.which("apt-get"):
        raise ArrError("--fetch needs apt-get (a Debian or Ubuntu machine); pass --lists-dir with lists copied from one")
    lists, cache = folder / "lists", folder / "cache"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    (cache / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    command = ["apt-get", "-o", "Acquire::Languages=en", "-o", f"Dir::State::Lists={lists}",
               "-o", f"Dir::Cache={cache}", "update"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ArrError(f"apt-get update into {lists} failed ({last}); it needs root and network access to the "
                       "machine's apt sources")
    return lists


def release_info(path: Path | None) -> dict:
    """Origin, Suite, Version, Codename, Date and Description of an InRelease file."""
    info: dict[str, str] = {}
    if path is None:
        return info
    for line in read_list_file(path).split("\n"):
        match = re.match(r"^(Origin|Suite|Version|Codename|Date|Description):\s*(.*)$", line)
        if match and match.group(1) not in info:
            info[match.group(1)] = match.group(2).strip()
        if line.startswith(("MD5Sum:", "SHA256:")):
            break
    return info


def parse_deb822(text: str) -> Iterable[dict[str, str]]:
    """One dict per stanza; continuation lines are kept, joined by newlines."""
    current: dict[str, str] = {}
    last = None
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line.strip():
            if current:
                yield current
            current, last = {}, None
            continue
        if line[0] in " \t":
            if last is not None:
                current[last] += "\n" + line
            continue
        key, _, value = line.partition(":")
        current[key] = value.strip()
        last = key
    if current:
        yield current


# ----------------------------------------------------------------------------- cleaning

_BULLET = re.compile(r"^([*+o•·‣-]|\d{1,2}[.)])(\s|$)")


def clean_long_description(lines: list[str]) -> str:
    """Debian long-description lines as text: ' .' separates paragraphs (a blank line); plain lines
    (one leading space) are joined with spaces; verbatim lines (deeper indented) that start a
    bullet or follow plain text start a new line, their indented continuations are joined back."""
    paragraphs: list[list[str]] = []
    current: list[str] = []
    previous_verbatim = False
    for raw in lines:
        body = raw[1:] if raw[:1] in (" ", "\t") else raw
        if body.strip() == ".":
            paragraphs.append(current)
            current, previous_verbatim = [], False
            continue
        text = " ".join(body.split())
        if not text:
            continue
        verbatim = body[:1] in (" ", "\t")
        if not current:
            current.append(text)
        elif verbatim:
            if _BULLET.match(text) or not previous_verbatim:
                current.append(text)
            else:  # continuation of a wrapped bullet
                current[-1] += " " + text
        elif previous_verbatim:
            current.append(text)
        else:
            current[-1] += " " + text
        previous_verbatim = verbatim
    paragraphs.append(current)
    return "\n\n".join("\n".join(p) for p in paragraphs if p).strip()


# A sentence made only of these packaging words (and numbers or punctuation) is boilerplate, e.g.
# "This package contains the development files."
GENERIC_SENTENCE_WORDS = set("""
this that these it its is are be been was the a an of for and or to with in on by from as
package packages metapackage meta contains contain containing provides provide providing
includes include including installs install ships ship only all also just some other
shared static runtime run time development dev header headers file files library libraries
lib documentation docs doc api reference html manual manpages pages examples example common
data module modules extension extensions python version versions binaries binary symlinks
symlink architecture arch independent dependent specific debugging debug symbols symbol
transitional dummy source sources plugin plugins bindings binding interface interfaces
tools tool utilities utility programs program applications application needed necessary
required you need build building compile compiling develop developing use using used which
can may safely removed remove purged purge uninstalled after installation upgrade upgrades
ease help helps default part set collection core base main support files' qch info
""".split())

BOILERPLATE_SENTENCES = [re.compile(p, re.I) for p in (
    r"this package contains the source for the rust \S+ crate, packaged by debcargo for use "
    r"with cargo and dh-cargo\.?",
    r"this metapackage enables feature .* for the rust \S+ crate, by pulling in any "
    r"additional dependencies needed by that feature\.?",
    r"see \S+ for more information on haskell\.?",
    r"this package provides (the documentation for )?a library for the haskell programming "
    r"language(, compiled for profiling)?\.?",
    r"node\.?js is an event-based server-side javascript engine\.?",
    r".*\b(transitional|dummy (transitional )?package)\b.*",
    r".*\b(safely|can) be (safely )?(removed|purged|uninstalled)\b.*",
    r".*\b(remove|purge|uninstall)\w* (this|the) package\b.*",
    r"additionally, this package also provides the .* features?\.?",
    r".*\bdebug(ging)? symbols\b.*",
)]

_SENTENCE_SPLIT = re.compile(r"(?<=[.!?:])\s+|\n+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'+#]*")


def is_boilerplate_sentence(sentence: str) -> bool:
    sentence = sentence.strip()
    if not sentence or any(pattern.fullmatch(sentence) for pattern in BOILERPLATE_SENTENCES):
        return True
    return all(word.lower() in GENERIC_SENTENCE_WORDS for word in _WORD.findall(sentence))


def content_word_count(text: str) -> int:
    """Words of the text outside boilerplate sentences."""
    return sum(len(s.split()) for s in _SENTENCE_SPLIT.split(text) if not is_boilerplate_sentence(s))


# Generic short descriptions are no queries: a transitional, dummy or debug-symbols package, or one
# made only of packaging words ("documentation", "development files", "Python 3 module", ...).
GENERIC_QUERY = re.compile(
    r"\btransitional\b|\bdummy\b(?=\s*(transitional|package|\)|$))|"
    r"\bdebug(ging)?[ -]?(symbols?|info)\b|\bdbgsym\b|\bdetached debug", re.I)
GENERIC_QUERY_WORDS = set("""
the a an of for and or to with in on from by version package packages metapackage meta
dummy transitional documentation docs doc manual reference api html development dev files
file header headers library libraries lib shared static runtime data common module modules
plugin plugins extension extensions bindings binding binaries binary debug debugging symbols
examples tools utilities utils support arch architecture independent source code crate
python perl ruby php java javascript js node nodejs rust go golang haskell ocaml lua tcl
gnu r octave emacs elisp cli mono qt kde gnome gtk profiling introspection
""".split())


def is_generic_query(short: str) -> bool:
    if GENERIC_QUERY.search(short):
        return True
    words = [w.lower().strip(".-'") for w in re.findall(r"[A-Za-z][A-Za-z0-9+#.'-]*", short)]
    return not [w for w in words if w and w not in GENERIC_QUERY_WORDS]


def _sha_id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def split_of(cluster: str) -> str:
    bucket = int(hashlib.sha1(f"{SPLIT_SALT}:{cluster}".encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if bucket < 80 else ("dev" if bucket < 90 else "test")


# ----------------------------------------------------------------------------- documents and splits

def read_documents(lists: AptLists, stats: dict, log: Callable[[str], None]) -> dict[str, dict]:
    """The unique cleaned long descriptions by id, each with the (package, short, source, section)
    records that carry it."""
    package_info: dict[str, tuple[str, str]] = {}  # package -> (source, section); first seen wins
    packages_read = 0
    for path in lists.packages:
        for stanza in parse_deb822(read_list_file(path)):
            name = stanza.get("Package")
            if name:
                packages_read += 1
                package_info.setdefault(name, ((stanza.get("Source") or name).split()[0],
                                               stanza.get("Section", "unknown").split("/")[-1]))
    counts: collections.Counter = collections.Counter()
    texts: dict[str, set] = {}
    seen = set()
    for stanza in parse_deb822(read_list_file(lists.translation)):
        name, description = stanza.get("Package"), stanza.get("Description-en")
        if not name or description is None:
            continue
        counts["records"] += 1
        lines = description.split("\n")
        short, text = " ".join(lines[0].split()), clean_long_description(lines[1:])
        if (name, short, text) in seen:
            counts["records_duplicate"] += 1
            continue
        seen.add((name, short, text))
        problem = ("dropped_not_in_packages" if name not in package_info else "dropped_short"
                   if len(text.split()) < MIN_WORDS else "dropped_boilerplate"
                   if content_word_count(text) < MIN_CONTENT_WORDS else None)
        if problem:
            counts[problem] += 1
            continue
        counts["records_kept"] += 1
        texts.setdefault(text, set()).add((name, short, *package_info[name]))
    stats["records"] = dict(sorted(counts.items()))
    stats["packages_in_packages_files"] = packages_read
    log(f"records: {dict(counts)}")
    documents = {}
    for text, records in texts.items():
        doc_id = _sha_id("d", text)
        if doc_id in documents:
            raise ArrError(f"two descriptions share the id {doc_id} (a sha1 prefix collision)")
        records = sorted(records)
        documents[doc_id] = {"id": doc_id, "text": text, "pkgs": records, "sources": sorted({r[2] for r in records})}
    log(f"unique docs: {len(documents)}")
    return documents


def cluster_sources(documents: dict[str, dict], stats: dict) -> None:
    """Merge the sources that share a long or a short description (union-find, the smallest name
    represents a cluster), give each document its cluster, split, primary package and section."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        a, b = find(a), find(b)
        if a != b:
            a, b = min(a, b), max(a, b)
            parent[b] = a

    by_short: dict[str, set] = collections.defaultdict(set)
    for doc_id in sorted(documents):
        document = documents[doc_id]
        for source in document["sources"]:
            find(source)
            union(document["sources"][0], source)
        for record in document["pkgs"]:
            by_short[record[1]].add(record[2])
    for short in sorted(by_short):
        sources = sorted(by_short[short])
        for source in sources[1:]:
            union(sources[0], source)
    members: dict[str, set] = collections.defaultdict(set)
    for source in list(parent):
        members[find(source)].add(source)
    for document in documents.values():
        document["cluster"] = find(document["sources"][0])
        document["split"] = split_of(document["cluster"])
    stats["sources"] = len(parent)
    stats["source_clusters"] = len(members)
    stats["source_clusters_multi"] = sum(1 for v in members.values() if len(v) > 1)
    stats["largest_cluster"] = max(len(v) for v in members.values())
    # The primary package: a non-generic short description first, then package == source, then
    # the shortest package name, then alphabetical.
    for document in documents.values():
        document["primary"] = sorted(document["pkgs"], key=lambda r: (is_generic_query(r[1]), r[0] != r[2],
                                                                    len(r[0]), r[0], r[1]))[0]
        document["section"] = document["primary"][3]


def candidate_queries(documents: dict[str, dict], stats: dict) -> dict[str, dict]:
    """Every distinct short description as a query of its split (the clusters keep one short
    description in one split), with its documents and whether it is generic or leaks into them."""
    by_short: dict[str, set] = collections.defaultdict(set)
    for doc_id, document in documents.items():
        for record in document["pkgs"]:
            by_short[record[1]].add(doc_id)
    queries: dict[str, dict] = {}
    counts: collections.Counter = collections.Counter()
    for short in sorted(by_short):
        doc_ids = sorted(by_short[short])
        splits = {documents[d]["split"] for d in doc_ids}
        if len(splits) != 1:
            raise ArrError(f"the short description {short!r} spans the splits {sorted(splits)}")
        split = splits.pop()
        generic = is_generic_query(short)
        leak_exact = any(short in documents[d]["text"] for d in doc_ids)
        leak_ci = any(short.lower() in documents[d]["text"].lower() for d in doc_ids)
        query_id = _sha_id("q", short)
        queries[query_id] = {"_id": query_id, "text": short, "split": split, "docs": doc_ids, "generic": generic,
                             "leak_exact": leak_exact, "leak_ci": leak_ci}
        counts[f"{split}_all"] += 1
        if generic:
            counts[f"{split}_generic"] += 1
        else:
            counts[f"{split}_nongeneric"] += 1
            counts[f"{split}_leak_exact"] += leak_exact
            counts[f"{split}_leak_ci"] += leak_ci
    stats["queries"] = dict(sorted(counts.items()))
    return queries


@dataclass
class BeirSplit:
    queries: list[str]
    corpus: set[str]
    distractors: set[str]
    qrels: dict[str, list[str]]
    eligible: int  # queries the split could have sampled from


def sample_beir_splits(documents: dict[str, dict], queries: dict[str, dict], split_docs: dict[str, list[str]],
                       rng: random.Random) -> tuple[BeirSplit, BeirSplit]:
    """test: sampled eligible test queries over every test document plus as many train documents as
    distractors; dev: sampled dev queries over the documents of their clusters plus as many other
    train documents."""

    def eligible(split: str) -> list[str]:
        return sorted(q for q, v in queries.items() if v["split"] == split and not v["generic"] and not v["leak_ci"])

    test_queries = eligible("test")
    test_queries = sorted(rng.sample(test_queries, min(MAX_TEST_QUERIES, len(test_queries))))
    test_corpus = set(split_docs["test"])
    train_pool = list(split_docs["train"])
    test_distractors = set(rng.sample(train_pool, min(len(test_corpus), len(train_pool))))
    test = BeirSplit(test_queries, test_corpus | test_distractors, test_distractors,
                     {q: queries[q]["docs"] for q in test_queries}, len(eligible("test")))
    dev_queries = eligible("dev")
    dev_eligible = len(dev_queries)
    dev_queries = sorted(rng.sample(dev_queries, min(MAX_DEV_QUERIES, len(dev_queries))))
    clusters = {documents[d]["cluster"] for q in dev_queries for d in queries[q]["docs"]}
    dev_corpus = {d for d in split_docs["dev"] if documents[d]["cluster"] in clusters}
    pool = [d for d in train_pool if d not in test_distractors]
    dev_distractors = set(rng.sample(pool, min(len(dev_corpus), len(pool))))
    dev = BeirSplit(dev_queries, dev_corpus | dev_distractors, dev_distractors, {q: queries[q]["docs"] for q in dev_queries},
                    dev_eligible)
    return test, dev


def training_rows(documents: dict[str, dict], train_ids: list[str], seed: int, stats: dict):
    """(compression rows, (doc id, query) pairs, triplets, sections) from the train split: each document's
    primary short description as the output of a summary instruction, each distinct one as a query
    of its document, with a negative from the same section and one from another."""
    compression, pairs, used = [], [], set()
    for doc_id in train_ids:
        short = documents[doc_id]["primary"][1]
        if is_generic_query(short):
            continue
        instruction = INSTRUCTIONS[int(hashlib.sha1(doc_id.encode()).hexdigest()[:8], 16) % len(INSTRUCTIONS)]
        compression.append({"context": documents[doc_id]["text"], "instruction": instruction, "output": short})
        if short not in used:
            used.add(short)
            pairs.append((doc_id, short))
    by_section: dict[str, list] = collections.defaultdict(list)
    for doc_id in train_ids:
        by_section[documents[doc_id]["section"]].append(doc_id)
    rng = random.Random(seed + 1)
    triplets, same_section = [], 0

    def other_cluster(candidates: list[str], document: dict, tries: int | None, other_section: bool = False) -> str | None:
        for _ in range(tries) if tries else itertools.count():
            candidate = documents[candidates[rng.randrange(len(candidates))]]
            if candidate["cluster"] != document["cluster"] and (not other_section or candidate["section"] != document["section"]):
                return candidate["id"]
        return None

    for doc_id, short in pairs:
        document = documents[doc_id]
        first = other_cluster(by_section[document["section"]], document, 50)
        if first is None:  # a tiny section: any other cluster
            first = other_cluster(train_ids, document, None)
        else:
            same_section += 1
        second = other_cluster(train_ids, document, None, other_section=True)
        triplets.append({"query": short, "pos": document["text"], "neg": [documents[first]["text"], documents[second]["text"]]})
    stats["triplets_neg1_same_section"] = same_section
    return compression, pairs, triplets, len(by_section)


# ----------------------------------------------------------------------------- writing

def _jsonl_bytes(rows: Iterable[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def _write_jsonl(path: Path, rows: Iterable[dict], gz: bool = False) -> None:
    """Rows as JSON lines; gzip'ed with no name or time in the header, so the bytes are reproducible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _jsonl_bytes(rows)
    if gz:
        with open(path.with_name(path.name + ".gz"), "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def _write_qrels(path: Path, qrels: dict[str, list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for query_id in sorted(qrels):
            for doc_id in sorted(qrels[query_id]):
                handle.write(f"{query_id}\t{doc_id}\t1\n")


def _write_beir(folder: Path, split: str, documents: dict[str, dict], queries: dict[str, dict], beir: BeirSplit) -> None:
    _write_jsonl(folder / "corpus.jsonl", ({"_id": d, "title": "", "text": documents[d]["text"]} for d in sorted(beir.corpus)))
    _write_jsonl(folder / "queries.jsonl", ({"_id": q, "text": queries[q]["text"]} for q in sorted(beir.queries)))
    _write_qrels(folder / "qrels" / f"{split}.tsv", beir.qrels)


def _meta_rows(documents: dict[str, dict], queries: dict[str, dict], beir_queries: set[str]) -> tuple[list, list]:
    meta_docs = [{"_id": d, "split": documents[d]["split"], "cluster": documents[d]["cluster"],
                  "section": documents[d]["section"],
                  "packages": [{"package": r[0], "short": r[1], "source": r[2], "section": r[3]} for r in documents[d]["pkgs"]]}
                 for d in sorted(documents)]
    meta_queries = [{"_id": q, "text": v["text"], "split": v["split"], "docs": v["docs"], "generic": v["generic"],
                     "leak_exact": v["leak_exact"], "leak_ci": v["leak_ci"], "in_beir": q in beir_queries}
                    for q, v in sorted(queries.items())]
    return meta_docs, meta_queries


def write_checksums(folder: Path) -> Path:
    """SHA256SUMS of every file of the set (test/ dev/ full/ train/ meta/), sorted by path."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and p.relative_to(folder).parts[0] in ("test", "dev", "full", "train", "meta")
                   and not p.name.startswith("."))
    lines = []
    for relative in files:
        digest = hashlib.sha256()
        with open(folder / relative, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        lines.append(f"{digest.hexdigest()}  {relative}\n")
    path = folder / "SHA256SUMS"
    path.write_text("".join(lines), encoding="utf-8", newline="\n")
    return path


@dataclass
class BuiltSet:
    folder: Path
    counts: dict
    release: dict
    checksums: Path
    matches_reference: bool  # the checksums equal those of the set BENCHMARKS.md measured
    differing: list[str] = field(default_factory=list)  # files whose checksum differs from the reference


def build_debian_desc(out: Path, lists: AptLists, *, seed: int = DEFAULT_SEED, gzip_files: str = "auto",
                      overwrite: bool = False, log: Callable[[str], None] = lambda line: None) -> BuiltSet:
    """Build the set into `out`, whole or not at all (a staging folder renamed into place), and
    compare its checksums with the reference ones."""
    if gzip_files not in ("auto", "always", "never"):
        raise ArrError(f"gzip must be auto, always or never, not {gzip_files!r}")
    release = release_info(lists.release)
    log(f"translation: {lists.translation.name}")
    log(f"packages:    {', '.join(p.name for p in lists.packages)}")
    stats: dict = collections.OrderedDict()
    stats["source"] = {"suite": lists.suite, "component": lists.component, "translation_file": lists.translation.name,
                       "packages_files": [p.name for p in lists.packages], "release": release}
    documents = read_documents(lists, stats, log)
    cluster_sources(documents, stats)
    queries = candidate_queries(documents, stats)
    split_docs = {s: sorted(d for d, v in documents.items() if v["split"] == s) for s in ("train", "dev", "test")}
    stats["docs_per_split"] = {s: len(v) for s, v in split_docs.items()}
    stats["clusters_per_split"] = {s: len({documents[d]["cluster"] for d in v}) for s, v in split_docs.items()}
    stats["sources_per_split"] = {s: len({src for d in v for src in documents[d]["sources"]}) for s, v in split_docs.items()}
    provenance = {"built_by": "arr data debian-desc", "seed": seed, "release": release,
                  "inputs": [str(p) for p in (lists.translation, *lists.packages)]}
    write_folder_atomic(out, lambda staging: _write_set(staging, documents, queries, split_docs, stats, seed, gzip_files),
                        PROVENANCE_FILE, provenance, existing="replace" if overwrite else "refuse")
    counts = json.loads((out / "meta" / "stats.json").read_text(encoding="utf-8"))["counts"]
    differing = _differing_from_reference(out / "SHA256SUMS")
    log(json.dumps(counts, indent=1))
    return BuiltSet(out, counts, release, out / "SHA256SUMS", not differing, differing)


def _write_set(out: Path, documents: dict[str, dict], queries: dict[str, dict], split_docs: dict[str, list[str]],
               stats: dict, seed: int, gzip_files: str) -> None:
    test, dev = sample_beir_splits(documents, queries, split_docs, random.Random(seed))
    _write_beir(out / "test", "test", documents, queries, test)
    _write_beir(out / "dev", "dev", documents, queries, dev)
    compression, pairs, triplets, sections = training_rows(documents, split_docs["train"], seed, stats)
    pair_rows = [{"query": short, "pos": documents[d]["text"]} for d, short in pairs]
    full = [{"_id": d, "title": "", "text": documents[d]["text"]} for d in sorted(documents)]
    meta_docs, meta_queries = _meta_rows(documents, queries, set(test.qrels) | set(dev.qrels))
    big = {"train/compression.jsonl": compression, "train/triplets.jsonl": triplets, "train/pairs.jsonl": pair_rows,
           "full/corpus.jsonl": full, "meta/docs.jsonl": meta_docs, "meta/queries.jsonl": meta_queries}
    plain_total = sum(len(_jsonl_bytes(rows)) for rows in big.values())
    plain_total += sum(p.stat().st_size for sub in ("test", "dev") for p in (out / sub).iterdir() if p.is_file())
    gz = {"never": False, "always": True, "auto": plain_total > GZIP_TOTAL_LIMIT}[gzip_files]
    stats["plain_total_bytes"] = plain_total
    stats["gzip_big_files"] = gz
    for relative, rows in big.items():
        _write_jsonl(out / relative, rows, gz)
    _write_jsonl(out / "full" / "queries.jsonl", ({"_id": q, "text": queries[q]["text"]} for q in sorted(test.queries)))
    _write_qrels(out / "full" / "qrels" / "test.tsv", test.qrels)
    stats["counts"] = _counts(test, dev, split_docs, full, compression, triplets, pairs, meta_docs, meta_queries)
    stats["avg_words"] = {
        "doc_all": _average_words(d["text"] for d in documents.values()),
        "test_queries": _average_words(queries[q]["text"] for q in test.queries),
        "dev_queries": _average_words(queries[q]["text"] for q in dev.queries),
        "test_corpus": _average_words(documents[d]["text"] for d in test.corpus),
        "train_queries(pairs)": _average_words(short for _, short in pairs),
    }
    stats["relevant_docs_per_query"] = {
        "test": round(sum(len(v) for v in test.qrels.values()) / max(1, len(test.queries)), 3),
        "dev": round(sum(len(v) for v in dev.qrels.values()) / max(1, len(dev.queries)), 3),
    }
    stats["sections_train"] = sections
    stats["seed"] = seed
    with open(out / "meta" / "stats.json", "w", encoding="utf-8", newline="\n") as handle:
        json.dump(stats, handle, indent=1, ensure_ascii=False)
        handle.write("\n")
    write_checksums(out)


def _counts(test: BeirSplit, dev: BeirSplit, split_docs, full, compression, triplets, pairs, meta_docs, meta_queries) -> dict:
    return {
        "test": {"corpus": len(test.corpus), "corpus_test_docs": len(split_docs["test"]),
                 "corpus_train_distractors": len(test.distractors), "queries": len(test.queries),
                 "qrels": sum(len(v) for v in test.qrels.values()), "eligible_queries": test.eligible},
        "dev": {"corpus": len(dev.corpus), "corpus_dev_docs": len(dev.corpus) - len(dev.distractors),
                "corpus_train_distractors": len(dev.distractors), "queries": len(dev.queries),
                "qrels": sum(len(v) for v in dev.qrels.values()), "eligible_queries": dev.eligible},
        "full": {"corpus": len(full), "queries": len(test.queries), "qrels": sum(len(v) for v in test.qrels.values())},
        "train": {"compression": len(compression), "triplets": len(triplets), "pairs": len(pairs)},
        "meta": {"docs": len(meta_docs), "queries": len(meta_queries)},
    }


def _average_words(texts: Iterable[str]) -> float:
    texts = list(texts)
    return round(sum(len(t.split()) for t in texts) / max(1, len(texts)), 2)


def _differing_from_reference(checksums: Path) -> list[str]:
    """Files whose checksum differs from (or is missing in) the reference set's."""
    def read(path: Path) -> dict[str, str]:
        return dict(reversed(line.split("  ", 1)) for line in path.read_text(encoding="utf-8").splitlines() if line)

    built, reference = read(checksums), read(REFERENCE_SUMS)
    return sorted(name for name in built.keys() | reference.keys() if built.get(name) != reference.get(name))
