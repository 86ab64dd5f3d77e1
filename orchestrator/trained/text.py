"""TF-IDF features of an issue: fitted with scikit-learn, applied with a few lines of numpy.

Fitting uses ``sklearn.feature_extraction.text.TfidfVectorizer`` (word 1-2-grams, sublinear tf, smooth idf,
l2 norm). What a fit leaves is the vocabulary and the idf vector, kept as plain data. Applying them to one
issue is re-implemented here (the same lowercasing, token pattern and n-gram joining as scikit-learn's
analyzer) because it is ~20x faster per issue than ``vectorizer.transform`` and needs no scikit-learn
import to serve; ``tests/trained`` checks it gives scikit-learn's vectors.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..types import Issue

if TYPE_CHECKING:
    import numpy as np

TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default
_TOKENS = re.compile(TOKEN_PATTERN)


def issue_text(issue: Issue) -> str:
    """What the classical models read: the title, the body and the issue's own labels (never gold)."""
    return "\n".join((issue.title, issue.body, " ".join(issue.labels)))


def analyze(text: str, ngram_max: int = 2) -> list[str]:
    """The terms of ``text`` exactly as scikit-learn's word analyzer makes them."""
    tokens = _TOKENS.findall(text.lower())
    if ngram_max == 1:
        return tokens
    terms = list(tokens)
    for n in range(2, min(ngram_max, len(tokens)) + 1):
        terms.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return terms


def vectorizer_params(ngram_max: int = 2, min_df: int = 1) -> dict:
    """The TfidfVectorizer settings of every fit here (a reference pipeline uses the same)."""
    import numpy as np

    return {
        "ngram_range": (1, ngram_max),
        "sublinear_tf": True,
        "min_df": min_df,
        "token_pattern": TOKEN_PATTERN,
        "lowercase": True,
        "dtype": np.float64,
    }


@dataclass
class Tfidf:
    """A fitted vocabulary and idf; :meth:`vector` gives one text's l2-normalized sparse vector."""

    terms: list[str]
    idf: np.ndarray
    ngram_max: int = 2

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.terms)}

    @classmethod
    def fit(cls, texts: Sequence[str], ngram_max: int = 2, min_df: int = 1):
        """Fit on ``texts``; returns (Tfidf, the training matrix as scikit-learn computed it)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(**vectorizer_params(ngram_max, min_df))
        matrix = vec.fit_transform(texts)
        terms = [""] * len(vec.vocabulary_)
        for term, i in vec.vocabulary_.items():
            terms[i] = term
        return cls(terms, vec.idf_.astype("float64"), ngram_max), matrix

    def vector(self, text: str, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(feature indices, weights) of ``text``: sublinear tf x idf, l2-normalized (unless not
        ``normalize``); unknown terms dropped."""
        import numpy as np

        index = self.index
        counts = Counter(i for t in analyze(text, self.ngram_max) if (i := index.get(t)) is not None)
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        idx = np.fromiter(sorted(counts), dtype=np.int64, count=len(counts))
        tf = np.array([1.0 + math.log(counts[i]) for i in idx.tolist()], dtype=np.float64)
        w = tf * self.idf[idx]
        return idx, (w / np.sqrt(np.dot(w, w))) if normalize else w

    def matrix(self, texts: Sequence[str]):
        """A scipy CSR matrix of :meth:`vector` rows."""
        import numpy as np
        from scipy.sparse import csr_matrix

        indptr, indices, data = [0], [], []
        for text in texts:
            idx, w = self.vector(text)
            indices.append(idx)
            data.append(w)
            indptr.append(indptr[-1] + len(idx))
        return csr_matrix(
            (
                np.concatenate(data) if data else np.zeros(0),
                np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64),
                np.asarray(indptr),
            ),
            shape=(len(texts), len(self.terms)),
        )
