"""Label metrics for classification answers: macro-F1 per repository (averaged) and a per-label report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .columns import _errored

INVALID_LABEL = "<invalid>"


def macro_f1(
    y_true: Iterable[object], y_pred: Iterable[object], labels: Sequence[object] | None = None
) -> float:
    """Macro-averaged F1, identical to ``sklearn.metrics.f1_score(average="macro")``.

    ``labels`` defaults to the sorted union of true and predicted labels; a label with no true and no
    predicted sample scores 0.0 (sklearn's ``zero_division="warn"`` value). NaN for empty input.
    """
    yt = np.asarray(list(y_true), dtype=object)
    yp = np.asarray(list(y_pred), dtype=object)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {yt.size} != {yp.size}")
    if labels is None:
        labels = sorted(set(yt.tolist()) | set(yp.tolist()))
    if yt.size == 0 or len(labels) == 0:
        return float("nan")
    scores = []
    for label in labels:
        t, p = yt == label, yp == label
        tp, fp, fn = int(np.sum(t & p)), int(np.sum(~t & p)), int(np.sum(t & ~p))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def _pred_label(value: object) -> str:
    """A normalized predicted label; missing or empty predictions become :data:`INVALID_LABEL`."""
    if value is None or (not isinstance(value, str) and pd.isna(value)) or not str(value).strip():
        return INVALID_LABEL
    return str(value).strip().lower()


def _classify_rows(df: pd.DataFrame, mode: str = "classify") -> pd.DataFrame:
    """Cells of a label ``mode`` (classify, or a label task's mode) with a gold label that did not fail;
    predictions normalized, missing ones invalid."""
    sub = df[df["mode"] == mode] if "mode" in df.columns else df
    sub = sub[sub["gold_type"].notna() & ~_errored(sub)]
    gold = sub["gold_type"].astype(str).str.strip().str.lower()
    raw = sub["pred_type"] if "pred_type" in sub.columns else pd.Series(None, index=sub.index, dtype=object)
    pred = raw.astype(object).map(_pred_label)
    repo = sub["repo"] if "repo" in sub.columns else pd.Series("", index=sub.index)
    model = sub["model"] if "model" in sub.columns else pd.Series("", index=sub.index)
    return pd.DataFrame({"model": model, "repo": repo, "gold": gold, "pred": pred})


def _labels_of(gold: pd.Series, pred: pd.Series) -> list[str]:
    return sorted((set(gold) | set(pred)) - {INVALID_LABEL})


def f1_per_repo(df: pd.DataFrame, labels: Sequence[str] | None = None, *, mode: str = "classify") -> float:
    """Macro-F1 per repository, averaged over repositories (the NLBSE issue-report metric), for one model.

    Uses the rows of ``mode`` (classify, or a label task such as ``priority``) with a gold label; failed
    cells are left out; a missing or empty prediction counts as wrong (it never forms a class of its own).
    Labels per repository: ``labels`` (a task's label set) or the sorted union of its gold and predicted ones.
    """
    rows = _classify_rows(df, mode)
    if rows["model"].nunique() > 1:
        raise ValueError("f1_per_repo takes one model's rows; use classification_report_df for several")
    return _mean_repo_f1(rows, labels)


def _repo_f1(rows: pd.DataFrame, labels: Sequence[str] | None) -> dict[str, float]:
    return {
        str(repo): macro_f1(r["gold"], r["pred"], labels or _labels_of(r["gold"], r["pred"]))
        for repo, r in rows.groupby("repo", sort=True)
    }


def _mean_repo_f1(rows: pd.DataFrame, labels: Sequence[str] | None) -> float:
    scores = list(_repo_f1(rows, labels).values())
    return float(np.mean(scores)) if scores else float("nan")


def classification_report_df(
    df: pd.DataFrame, labels: Sequence[str] | None = None, *, mode: str = "classify"
) -> pd.DataFrame:
    """Per model: cells, accuracy, macro-F1 over all repositories pooled, per-repo-averaged F1
    (:func:`f1_per_repo`), the share of invalid predictions, and one ``f1:<repo>`` column per repository."""
    rows = _classify_rows(df, mode)
    out = []
    for model, r in rows.groupby("model", sort=True):
        per_repo = _repo_f1(r, labels)
        record: dict[str, object] = {
            "model": model,
            "n": len(r),
            "accuracy": float((r["gold"] == r["pred"]).mean()),
            "macro_f1": macro_f1(r["gold"], r["pred"], labels or _labels_of(r["gold"], r["pred"])),
            "f1_per_repo": float(np.mean(list(per_repo.values()))),
            "invalid_rate": float((r["pred"] == INVALID_LABEL).mean()),
        }
        record.update({f"f1:{repo}": f1 for repo, f1 in per_repo.items()})
        out.append(record)
    return pd.DataFrame(out)
