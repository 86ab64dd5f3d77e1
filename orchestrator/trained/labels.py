"""The trained floor of a label task: TF-IDF (word 1-2-grams, sublinear tf) and logistic regression.

One logistic regression ("head") per property of the task's answer: classify has three (type, component,
severity, each against the gold field of that name), a task file's label task has one (``label``, against
its gold field). Fitted with scikit-learn; served from the plain arrays with numpy (``X @ coef.T +
intercept``, argmax), which gives scikit-learn's own predictions (``tests/trained``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..types import Issue
from .store import decode_lines, encode_lines
from .text import Tfidf, issue_text

if TYPE_CHECKING:
    import numpy as np

    from ..modes import Mode


def logreg_params(params: dict[str, Any]) -> dict[str, Any]:
    """The LogisticRegression settings of a fit (a reference pipeline uses the same)."""
    return {
        "C": float(params["C"]),
        "max_iter": int(params["max_iter"]),
        "class_weight": params["class_weight"],
    }


@dataclass(frozen=True)
class Target:
    """One property of the answer and the gold field it is learned from; ``enum``: its allowed labels."""

    prop: str
    gold_field: str
    enum: tuple[str, ...] | None


def targets(mode: Mode) -> list[Target]:
    """The properties a label task answers with, each with its gold field."""
    key = mode.scorer_params.get("key", "label")
    gold_field = mode.scorer_params.get("field", mode.task_name)
    props = (mode.schema or {}).get("properties") or {key: {}}
    out = []
    for prop, spec in props.items():
        enum = spec.get("enum") if isinstance(spec, dict) else None
        out.append(Target(prop, gold_field if prop == key else prop, tuple(map(str, enum)) if enum else None))
    return out


@dataclass
class Head:
    """One property's classifier: ``coef`` has one row per class (one row for two classes), none for a
    property every training issue has the same label for (``classes[0]`` is then the answer)."""

    prop: str
    classes: list[str]
    coef: np.ndarray
    intercept: np.ndarray

    def predict(self, idx: np.ndarray, w: np.ndarray) -> str:
        import numpy as np

        if len(self.classes) == 1 or self.coef.shape[0] == 0:
            return self.classes[0]
        scores = self.coef[:, idx] @ w + self.intercept
        if len(self.classes) == 2:
            return self.classes[1] if scores[0] > 0 else self.classes[0]
        return self.classes[int(np.argmax(scores))]


@dataclass
class LabelModel:
    tfidf: Tfidf
    heads: list[Head]
    params: dict[str, Any] = field(default_factory=dict)
    n_train: int = 0

    @classmethod
    def fit(cls, issues: Sequence[Issue], mode: Mode, params: dict[str, Any]) -> LabelModel:
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        if not issues:
            raise ValueError("no training issues")
        tfidf, matrix = Tfidf.fit([issue_text(i) for i in issues], params["ngram_max"], params["min_df"])
        heads = []
        for target in targets(mode):
            rows, labels = [], []
            for r, issue in enumerate(issues):
                value = issue.gold.value_of(target.gold_field) if issue.gold is not None else None
                if value in (None, "") or (target.enum and str(value) not in target.enum):
                    continue
                rows.append(r)
                labels.append(str(value))
            empty = np.zeros((0, len(tfidf.terms)))
            if len(set(labels)) < 2:
                fallback = labels[0] if labels else (target.enum[0] if target.enum else "unknown")
                heads.append(Head(target.prop, [fallback], empty, np.zeros(0)))
                continue
            clf = LogisticRegression(**logreg_params(params)).fit(matrix[rows], labels)
            heads.append(
                Head(
                    target.prop, [str(c) for c in clf.classes_], clf.coef_.astype(np.float64), clf.intercept_
                )
            )
        return cls(tfidf, heads, dict(params), len(issues))

    def predict(self, issue: Issue) -> dict[str, str]:
        idx, w = self.tfidf.vector(issue_text(issue))
        return {h.prop: h.predict(idx, w) for h in self.heads}

    def answer(self, issue: Issue) -> str:
        return json.dumps(self.predict(issue))

    def vocabulary(self) -> list[str]:
        return self.tfidf.terms

    # ------------------------------------------------------------------------------------- plain data

    def to_plain(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "params": self.params,
            "n_train": self.n_train,
            "ngram_max": self.tfidf.ngram_max,
            "heads": [{"prop": h.prop, "classes": h.classes} for h in self.heads],
        }
        arrays = {"terms": encode_lines(self.tfidf.terms), "idf": self.tfidf.idf}
        for j, h in enumerate(self.heads):
            arrays[f"coef_{j}"] = h.coef
            arrays[f"intercept_{j}"] = h.intercept
        return meta, arrays

    @staticmethod
    def required(meta: dict[str, Any]) -> dict[str, tuple[str, int]]:
        req = {"terms": ("u", 1), "idf": ("f", 1)}
        for j in range(len(meta.get("heads") or [])):
            req |= {f"coef_{j}": ("f", 2), f"intercept_{j}": ("f", 1)}
        return req

    @classmethod
    def from_plain(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> LabelModel:
        terms = decode_lines(arrays["terms"])
        idf = arrays["idf"]
        if len(terms) != len(idf):
            raise ValueError(f"{len(terms)} terms but {len(idf)} idf values")
        heads = []
        for j, h in enumerate(meta["heads"]):
            classes = [str(c) for c in h["classes"]]
            coef, intercept = arrays[f"coef_{j}"], arrays[f"intercept_{j}"]
            rows = 0 if len(classes) == 1 else 1 if len(classes) == 2 else len(classes)
            if not classes or coef.shape[0] not in (0, rows) or (rows and coef.shape != (rows, len(terms))):
                raise ValueError(f"head {j}: coefficients of shape {coef.shape} for {len(classes)} classes")
            if intercept.shape != (coef.shape[0],):
                raise ValueError(f"head {j}: intercept of shape {intercept.shape}")
            heads.append(Head(str(h["prop"]), classes, coef, intercept))
        return cls(
            Tfidf(terms, idf, int(meta["ngram_max"])), heads, dict(meta["params"]), int(meta["n_train"])
        )
