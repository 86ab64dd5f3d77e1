"""The trained floor of a files task: the files of the most similar past issues (TF-IDF cosine over the
training issues that have gold files), the classical bug-localisation baseline (as in BugLocator's
similar-reports component, Zhou et al., 2012)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..types import Issue
from .store import decode_lines, encode_json, encode_lines
from .text import Tfidf, issue_text

if TYPE_CHECKING:
    import numpy as np

    from ..modes import Mode


@dataclass
class FilesModel:
    tfidf: Tfidf
    by_term: Any  # scipy CSR, terms x training issues: the l2-normalized issue vectors, transposed
    files: list[list[str]]
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, issues: Sequence[Issue], mode: Mode, params: dict[str, Any]) -> FilesModel:
        with_files = [i for i in issues if i.gold is not None and i.gold.files]
        if not with_files:
            raise ValueError("no training issue has gold files")
        tfidf, matrix = Tfidf.fit([issue_text(i) for i in with_files], params["ngram_max"], params["min_df"])
        return cls(tfidf, matrix.T.tocsr(), [list(i.gold.files) for i in with_files], dict(params))

    def nearest(self, issue: Issue) -> list[tuple[float, int]]:
        import numpy as np

        idx, w = self.tfidf.vector(issue_text(issue))
        if not len(idx):
            return []
        sims = np.asarray(self.by_term[idx].T @ w).ravel()
        k = min(int(self.params["neighbours"]), len(sims))
        top = np.argsort(-sims, kind="stable")[:k]
        return [(float(sims[j]), int(j)) for j in top if sims[j] > 0]

    def predict(self, issue: Issue) -> list[str]:
        votes: dict[str, float] = {}
        for sim, j in self.nearest(issue):
            for path in self.files[j]:
                votes[path] = votes.get(path, 0.0) + sim
        ranked = sorted(votes, key=lambda p: (-votes[p], p))
        return ranked[: int(self.params["files"])]

    def answer(self, issue: Issue) -> str:
        named = self.predict(issue)
        if not named:
            return "No similar past issue names a file."
        return "Files changed for the most similar past issues:\n" + "\n".join(f"- {p}" for p in named)

    def vocabulary(self) -> list[str]:
        return self.tfidf.terms

    def to_plain(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        m = self.by_term
        meta = {"params": self.params, "ngram_max": self.tfidf.ngram_max, "n_train": len(self.files)}
        arrays = {
            "terms": encode_lines(self.tfidf.terms),
            "idf": self.tfidf.idf,
            "data": m.data.astype("float64"),
            "indices": m.indices.astype("int64"),
            "indptr": m.indptr.astype("int64"),
            "files": encode_json(self.files),
        }
        return meta, arrays

    @staticmethod
    def required(meta: dict[str, Any]) -> dict[str, tuple[str, int]]:
        return {
            "terms": ("u", 1),
            "idf": ("f", 1),
            "data": ("f", 1),
            "indices": ("i", 1),
            "indptr": ("i", 1),
            "files": ("u", 1),
        }

    @classmethod
    def from_plain(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> FilesModel:
        from scipy.sparse import csr_matrix

        terms = decode_lines(arrays["terms"])
        files = json.loads(arrays["files"].tobytes().decode("utf-8"))
        if not isinstance(files, list) or not all(
            isinstance(f, list) and all(isinstance(p, str) for p in f) for f in files
        ):
            raise ValueError("'files' is not a list of lists of paths")
        n_terms, n_docs = len(terms), len(files)
        indptr, indices = arrays["indptr"], arrays["indices"]
        if len(arrays["idf"]) != n_terms or len(indptr) != n_terms + 1 or indptr[-1] != len(indices):
            raise ValueError("the matrix does not match the vocabulary")
        if len(indices) != len(arrays["data"]) or (
            len(indices) and (indices.min() < 0 or indices.max() >= n_docs)
        ):
            raise ValueError("the matrix indices are out of range")
        by_term = csr_matrix((arrays["data"], indices, indptr), shape=(n_terms, n_docs))
        return cls(Tfidf(terms, arrays["idf"], int(meta["ngram_max"])), by_term, files, dict(meta["params"]))
