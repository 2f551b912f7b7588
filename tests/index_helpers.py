"""Small corpora and brute-force references shared by the index and encoding tests."""

from arretrieve.corpus import CorpusSource
from arretrieve.encoding import EncodingOptions
from conftest import SENTENCES, write_beir_corpus


WORDS = " ".join(SENTENCES).split()
# 48 distinct small documents from the shared vocabulary.
ROWS = [
    {"_id": f"d{i:02d}", "title": "", "text": " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(5 + i % 7))}
    for i in range(48)
]
SMALL_SHARDS = EncodingOptions(shard_size=10, batch_size=4)


def corpus(tmp_path, rows=ROWS, name="corpus"):
    return write_beir_corpus(tmp_path / name, rows)


def exact_vectors(searcher, queries):
    """Document and query vectors computed directly, for brute-force comparisons."""
    texts = [d.full_text for d in CorpusSource(searcher.manifest.corpus[0]["path"]).documents()]
    return searcher.embedder.encode(texts, role="document"), searcher.embedder.encode(queries, role="query")
