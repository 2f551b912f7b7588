"""Registry models as MTEB models, and local BEIR folders as MTEB retrieval tasks.

    import mteb
    from arretrieve.integrations.mteb_model import ArretrieveEncoder, beir_folder_task
    mteb.evaluate(ArretrieveEncoder("autoregembed-smollm2-135m"), beir_folder_task("my-beir-folder"))

MTEB's query prompt type maps to arretrieve's `query` role and its document type to `document`;
tasks without a prompt type (STS, clustering, classification) use the `symmetric` role. Documents
are encoded as arretrieve encodes them (title and text on separate lines), so a retrieval task over
a BEIR folder scores what `arr beir-eval` scores on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..corpus.document import Document
from ..encoding import load_embedder
from ..errors import ArrError

try:
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta
    from mteb.types import PromptType
except ImportError:
    raise ArrError("MTEB models need mteb >= 2: pip install 'arretrieve[interop]'") from None
from ..evaluation.beir_data import load_dataset
from ..registry import Registry

ROLES = {PromptType.query: "query", PromptType.document: "document"}


class ArretrieveEncoder(AbsEncoder):
    """An MTEB encoder for one registry model (loaded once, encoded in length-sorted batches)."""

    def __init__(self, model_name: str, revision: str | None = None, *, device: str | None = None,
                 dtype: str | None = None, batch_size: int = 32, registry: Registry | None = None, **kwargs: Any):
        entry = (registry or Registry()).get(model_name)
        self.embedder = load_embedder(entry, device=device or "auto", dtype=dtype)
        self.batch_size = batch_size
        self.mteb_model_meta = ModelMeta(
            loader=None, name=f"arretrieve/{entry.name}", revision=entry.fingerprint, release_date=None,
            languages=None, n_parameters=None, memory_usage_mb=None, max_tokens=entry.max_length,
            embed_dim=self.embedder.dim, license=None, open_weights=True, public_training_code=None,
            public_training_data=None, framework=["PyTorch"], similarity_fn_name="cosine",
            use_instructions=True, training_datasets=None,
        )

    def encode(self, inputs, *, task_metadata: TaskMetadata, hf_split: str, hf_subset: str,
               prompt_type: PromptType | None = None, **kwargs: Any):
        role = ROLES.get(prompt_type, "symmetric")
        texts: list[str] = []
        for batch in inputs:
            if role == "document" and "body" in batch:
                # MTEB joins title and text with a space; arretrieve puts them on separate lines.
                titles = batch.get("title") or [""] * len(batch["body"])
                texts.extend(Document("", title or "", body).full_text for title, body in zip(titles, batch["body"]))
            else:
                texts.extend(batch["text"])
        return self.embedder.encode(texts, role=role, batch_size=self.batch_size)


class _BeirFolderTask(AbsTaskRetrieval):
    # MTEB reads a task's metadata from its class: `beir_folder_task` makes one subclass per folder.
    ignore_identical_ids = True
    _folder: Path
    _split: str

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        from datasets import Dataset

        dataset = load_dataset(str(self._folder), self._split)
        documents = list(dataset.corpus.documents())
        self.dataset = {"default": {self._split: RetrievalSplitData(
            queries=Dataset.from_list([{"id": qid, "text": text} for qid, text in dataset.queries.items()]),
            corpus=Dataset.from_list([{"id": d.id, "title": d.title, "text": d.text} for d in documents]),
            relevant_docs=dataset.qrels,
            top_ranked=None,
        )}}
        self.data_loaded = True


def beir_folder_task(folder: str | Path, split: str = "test", name: str | None = None) -> AbsTaskRetrieval:
    """An MTEB retrieval task over a local BEIR folder (nothing is downloaded); main score nDCG@10.
    Hits whose id equals the query id are ignored, as `arr beir-eval` ignores them by default."""
    folder = Path(folder).expanduser()
    dataset = load_dataset(str(folder), split)  # refuses a malformed folder before MTEB sees it
    metadata = TaskMetadata(
        name=name or f"arretrieve-{dataset.name}",
        description=f"The local BEIR folder {folder.resolve()} ({split} split).",
        reference=None,
        dataset={"path": str(folder.resolve()), "revision": dataset.fingerprint[:16]},
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=[split],
        eval_langs=["eng-Latn"],
        main_score="ndcg_at_10",
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation=None,
    )
    task_class = type("BeirFolderTask", (_BeirFolderTask,), {"metadata": metadata, "_folder": folder, "_split": split})
    return task_class()
