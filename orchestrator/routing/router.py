"""A learned per-issue router: for each candidate (model, prompt) of a task, a ridge regression predicting
its score from the issue; an issue goes to the cheapest candidate predicted within ``tau`` of the best.

Features of an issue: TF-IDF of its title, body and labels (:mod:`orchestrator.trained.text`), the log of
its length, its repository and its labels (one-hot). Gold is never a feature. Fitted with scikit-learn's
``Ridge``; served from plain arrays with numpy, and stored as plain data
(:mod:`orchestrator.trained.store`), so loading a router from a shared home runs no code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..trained.store import PlainDataError, decode_lines, encode_json, encode_lines, load_plain, save_plain
from ..trained.text import Tfidf, issue_text
from ..types import Issue

if TYPE_CHECKING:
    import numpy as np

KIND = "router"
# Each candidate's ridge sees only the features most correlated with its score (at most n/4 of them):
# with far more words than dev issues, a ridge over all of them spreads the weight over chance
# correlations and misses the one word that decides (tests/routing/test_learned.py, the marker run).
MAX_FEATURES = 200
# ridge penalties tried per candidate, the best by efficient leave-one-out error (RidgeCV)
ALPHAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)


@dataclass(frozen=True)
class Candidate:
    """One (model, prompt) a router may send an issue to; ``mode`` is the mode whose rows it has, ``cost``
    its mean cost per issue on the dev split (NaN: unknown, ranked after every known cost)."""

    model: str
    mode: str
    prompt: str
    cost: float

    @property
    def label(self) -> str:
        return self.model if self.prompt == "default" else f"{self.model} [{self.prompt}]"


@dataclass
class Router:
    task: str
    candidates: list[Candidate]
    tfidf: Tfidf
    repos: list[str]
    labels: list[str]
    coef: np.ndarray  # candidates x features
    intercept: np.ndarray  # candidates
    tau: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)  # provenance: run, dataset, objective, cost axis

    def __post_init__(self) -> None:
        self._repo_at = {r: k for k, r in enumerate(self.repos)}  # built once: features() runs per call
        self._label_at = {lab: k for k, lab in enumerate(self.labels)}

    # ----------------------------------------------------------------------------------------- features

    @staticmethod
    def vocabularies(issues: Sequence[Issue]) -> tuple[list[str], list[str]]:
        repos = sorted({i.repo for i in issues if i.repo})
        labels = sorted({lab for i in issues for lab in i.labels})
        return repos, labels

    def features(self, issue: Issue) -> tuple[np.ndarray, np.ndarray]:
        """(indices, values) of the issue's sparse feature row."""
        import numpy as np

        # tf-idf weights without the l2 norm: a router's signal is often one word, which the norm would
        # shrink to ~1/sqrt(words) and the ridge penalty would then drown
        idx, w = self.tfidf.vector(issue_text(issue), normalize=False)
        n = len(self.tfidf.terms)
        extra_idx = [n]
        extra_w = [math.log1p(len(issue.title) + len(issue.body)) / 10.0]
        repo_at, label_at = self._repo_at, self._label_at
        if issue.repo in repo_at:
            extra_idx.append(n + 1 + repo_at[issue.repo])
            extra_w.append(1.0)
        base = n + 1 + len(self.repos)
        for lab in dict.fromkeys(issue.labels):
            if lab in label_at:
                extra_idx.append(base + label_at[lab])
                extra_w.append(1.0)
        return (
            np.concatenate([idx, np.asarray(extra_idx, dtype=np.int64)]),
            np.concatenate([w, np.asarray(extra_w, dtype=np.float64)]),
        )

    @property
    def n_features(self) -> int:
        return len(self.tfidf.terms) + 1 + len(self.repos) + len(self.labels)

    def matrix(self, issues: Sequence[Issue]):
        import numpy as np
        from scipy.sparse import csr_matrix

        indptr, indices, data = [0], [], []
        for issue in issues:
            idx, w = self.features(issue)
            indices.append(idx)
            data.append(w)
            indptr.append(indptr[-1] + len(idx))
        return csr_matrix(
            (np.concatenate(data), np.concatenate(indices), np.asarray(indptr)),
            shape=(len(issues), self.n_features),
        )

    # ------------------------------------------------------------------------------------ fit, predict

    @classmethod
    def fit(
        cls,
        task: str,
        candidates: Sequence[Candidate],
        issues: Sequence[Issue],
        scores: np.ndarray,
        *,
        tau: float = 0.0,
        meta: dict[str, Any] | None = None,
        plain: Sequence[bool] | None = None,
    ) -> Router:
        """Fit one ridge per candidate (its penalty chosen by leave-one-out error) on ``scores`` (issues x candidates; NaN where a candidate has no
        score for an issue: left out of that candidate's fit). A ``plain`` candidate is predicted by its
        mean score alone."""
        import numpy as np
        from sklearn.linear_model import RidgeCV

        if not issues:
            raise ValueError("a router needs at least one dev issue")
        tfidf, _ = Tfidf.fit([issue_text(i) for i in issues], ngram_max=1, min_df=min(2, len(issues)))
        repos, labels = cls.vocabularies(issues)
        router = cls(
            task, list(candidates), tfidf, repos, labels, np.zeros((0, 0)), np.zeros(0), tau, meta or {}
        )
        X = router.matrix(issues)
        coef = np.zeros((len(candidates), router.n_features))
        intercept = np.zeros(len(candidates))
        for c in range(len(candidates)):
            known = ~np.isnan(scores[:, c])
            if known.sum() == 0:
                continue
            y = scores[known, c]
            if np.ptp(y) == 0 or (plain is not None and plain[c]):  # no fit: its mean is the prediction
                intercept[c] = float(y.mean())
                continue
            Xc = X[known]
            keep = top_features(Xc, y, max(5, min(MAX_FEATURES, len(y) // 4)))
            reg = RidgeCV(alphas=ALPHAS).fit(Xc[:, keep], y)
            coef[c, keep], intercept[c] = reg.coef_, reg.intercept_
        router.coef, router.intercept = coef, intercept
        return router

    def predict(self, issue: Issue) -> np.ndarray:
        """The predicted score of every candidate for ``issue``."""
        idx, w = self.features(issue)
        return self.coef[:, idx] @ w + self.intercept

    def choose_from(self, predicted: np.ndarray, tau: float) -> int:
        """The cheapest candidate predicted within ``tau`` of the best (ties: higher prediction, then order);
        a candidate of unknown cost is chosen only when no known-cost candidate is within ``tau``."""
        best = float(predicted.max())
        near = [c for c in range(len(self.candidates)) if predicted[c] >= best - tau - 1e-12]
        return min(
            near,
            key=lambda c: (math.isnan(self.candidates[c].cost), _cost(self.candidates[c]), -predicted[c], c),
        )

    def choose(self, issue: Issue, tau: float | None = None) -> Candidate:
        """The candidate this router sends ``issue`` to."""
        return self.candidates[self.choose_from(self.predict(issue), self.tau if tau is None else tau)]

    # ------------------------------------------------------------------------------------- plain data

    def save(self, path: Path) -> Path:
        meta = {
            "task": self.task,
            "tau": self.tau,
            "ngram_max": self.tfidf.ngram_max,
            "candidates": [
                {
                    "model": c.model,
                    "mode": c.mode,
                    "prompt": c.prompt,
                    "cost": None if math.isnan(c.cost) else c.cost,
                }
                for c in self.candidates
            ],
            "provenance": self.meta,
        }
        arrays = {
            "terms": encode_lines(self.tfidf.terms),
            "idf": self.tfidf.idf,
            "repos": encode_json(self.repos),
            "labels": encode_json(self.labels),
            "coef": self.coef,
            "intercept": self.intercept,
        }
        return save_plain(path, KIND, meta, arrays)

    @classmethod
    def load(cls, path: Path) -> Router:
        """A stored router; a file that is not one (tampered, truncated, pickled) is a PlainDataError."""
        import json

        required = {
            "terms": ("u", 1),
            "idf": ("f", 1),
            "repos": ("u", 1),
            "labels": ("u", 1),
            "coef": ("f", 2),
            "intercept": ("f", 1),
        }
        meta, arrays = load_plain(path, KIND, required)
        try:
            candidates = [
                Candidate(
                    str(c["model"]),
                    str(c["mode"]),
                    str(c["prompt"]),
                    math.nan if c["cost"] is None else float(c["cost"]),
                )
                for c in meta["candidates"]
            ]
            terms = decode_lines(arrays["terms"])
            repos = [str(r) for r in json.loads(arrays["repos"].tobytes())]
            labels = [str(x) for x in json.loads(arrays["labels"].tobytes())]
            router = cls(
                str(meta["task"]),
                candidates,
                Tfidf(terms, arrays["idf"], int(meta["ngram_max"])),
                repos,
                labels,
                arrays["coef"],
                arrays["intercept"],
                float(meta["tau"]),
                dict(meta.get("provenance") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlainDataError(
                f"{path}: not a usable router file: {exc}; write it again with "
                "`orchestrator route RUN_ID --router learned --write`"
            ) from None
        if (
            not candidates
            or len(terms) != len(arrays["idf"])
            or router.coef.shape != (len(candidates), router.n_features)
            or router.intercept.shape != (len(candidates),)
            or not math.isfinite(router.tau)
        ):
            raise PlainDataError(
                f"{path}: not a usable router file: its arrays do not match its candidates and vocabulary"
            )
        return router


def top_features(X: Any, y: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` columns of sparse ``X`` with the largest absolute correlation with ``y``."""
    import numpy as np

    n = X.shape[0]
    yc = y - y.mean()
    mean = np.asarray(X.mean(axis=0)).ravel()
    var = np.asarray(X.multiply(X).mean(axis=0)).ravel() - mean**2
    cov = np.asarray(X.T @ yc).ravel() / n
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(var > 1e-12, np.abs(cov) / np.sqrt(var * max(float(yc @ yc) / n, 1e-12)), 0.0)
    k = min(k, int((var > 1e-12).sum()))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.argpartition(-r, k - 1)[:k])


def _cost(c: Candidate) -> float:
    return 0.0 if math.isnan(c.cost) else c.cost


def router_path(home: Path, name: str) -> Path:
    return Path(home) / "routers" / f"{name}.npz"


_LOADED: dict[tuple[str, float], Router] = {}


def load_router(home: Path, name: str) -> Router:
    """The router ``name`` of ``home``, loaded once per process (reloaded when its file changes)."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise PlainDataError(f"router name {name!r}: letters, digits, '-', '_' and '.' only")
    path = router_path(home, name)
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise PlainDataError(
            f"{path}: no such router; write it with `orchestrator route RUN_ID --router learned --write`"
        ) from None
    key = (str(path), stamp)
    if key not in _LOADED:
        _LOADED[key] = Router.load(path)
    return _LOADED[key]
