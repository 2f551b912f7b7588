"""Rebuild examples/debian-sample/ from the Debian descriptions dev set (run from the repo root).

    python examples/make_debian_sample.py data/debian-desc/dev

Takes the first 120 dev queries (file order), all their relevant documents, and the first
distractor documents of the dev corpus up to 300 documents, as a small BEIR folder.
"""

import csv
import json
import sys
from pathlib import Path

QUERIES, DOCUMENTS = 120, 300

source = Path(sys.argv[1])
target = Path(__file__).parent / "debian-sample"
queries = [json.loads(line) for line in open(source / "queries.jsonl", encoding="utf-8")][:QUERIES]
wanted = {q["_id"] for q in queries}
qrels = [row for row in csv.DictReader(open(source / "qrels" / "dev.tsv", encoding="utf-8"), delimiter="\t") if row["query-id"] in wanted]
relevant = {row["corpus-id"] for row in qrels}
corpus = [json.loads(line) for line in open(source / "corpus.jsonl", encoding="utf-8")]
chosen = [d for d in corpus if d["_id"] in relevant]
chosen += [d for d in corpus if d["_id"] not in relevant][: DOCUMENTS - len(chosen)]
chosen.sort(key=lambda d: d["_id"])

(target / "qrels").mkdir(parents=True, exist_ok=True)
with open(target / "corpus.jsonl", "w", encoding="utf-8") as out:
    out.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in chosen)
with open(target / "queries.jsonl", "w", encoding="utf-8") as out:
    out.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in queries)
with open(target / "qrels" / "test.tsv", "w", encoding="utf-8") as out:
    out.write("query-id\tcorpus-id\tscore\n")
    out.writelines(f"{r['query-id']}\t{r['corpus-id']}\t{r['score']}\n" for r in qrels)
print(f"{len(chosen)} documents, {len(queries)} queries, {len(qrels)} qrels → {target}")
