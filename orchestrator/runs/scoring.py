"""Scoring the cells of a run: as they finish (the writer), with an LLM judge (a worker), and again later
without new model calls (:func:`rescore_run`)."""

from __future__ import annotations

import json
import logging
from typing import Any

from .. import errors as E
from ..types import Issue
from .store import ResultStore

log = logging.getLogger("orchestrator")


def score_safely(issue: Issue, mode: str, completion: Any) -> dict[str, Any]:
    """The mode's scorer; a scorer that fails on odd text leaves the cell unscored, never sinks the run."""
    try:
        return score_sync(issue, mode, completion.text, completion.parsed, completion.parse_error)
    except Exception as exc:
        log.warning("scoring %s (%s) failed: %s", issue.id, mode, exc)
        details = {"scorer_error": E.redact(f"{type(exc).__name__}: {exc}")[:500]}
        return {"score": None, "judge_score": None, "scores": json.dumps(details)}


def score_sync(
    issue: Issue, mode: str, text: str, parsed: dict | None, parse_error: str | None
) -> dict[str, Any]:
    """The mode's scorer on one answer: score, details (JSON) and no judge."""
    from ..scoring import score

    result = score(mode, issue.gold, text, parsed, parse_error)
    details = dict(result.details)
    if result.flagged:
        details["flagged"] = result.flagged
    return {"score": result.value, "judge_score": None, "scores": json.dumps(details, default=str)}


async def score_row(
    client: Any,
    issue: Issue,
    mode: str,
    text: str,
    parsed: dict | None,
    parse_error: str | None,
    judge_model: str | None,
    ledger: Any = None,
) -> dict[str, Any]:
    """Score one answer: the mode's scorer, plus the LLM judge for explain when a judge is set. A scorer that
    asks a model (``judge``: its ``asks``) is called with the client and its ``model`` parameter, else
    ``judge_model``."""
    from ..modes import get_mode
    from ..scoring import judge_explain, registry

    spec = get_mode(mode)
    info = registry.SCORERS.get(spec.scorer)
    if info is not None and info.asks is not None:
        params = dict(spec.scorer_params)
        model = params.pop("model", None) or judge_model
        if not model:
            details = {"flagged": "judge_error: no judge model (give the task's scorer a model, or --judge)"}
            return {"score": None, "judge_score": None, "scores": json.dumps(details)}
        judged = await info.asks(client, model, issue, text, ledger=ledger, **params)
        details = {**judged.details, **({"flagged": judged.flagged} if judged.flagged else {})}
        return {
            "score": judged.value,
            "judge_score": judged.value,
            "scores": json.dumps(details, default=str),
        }
    row = score_sync(issue, mode, text, parsed, parse_error)
    if judge_model and mode == "explain":
        judged = await judge_explain(client, judge_model, issue, text, ledger=ledger)
        details = json.loads(row["scores"])
        details["judge"] = {**judged.details, **({"flagged": judged.flagged} if judged.flagged else {})}
        row.update(judge_score=judged.value, scores=json.dumps(details, default=str))
    return row


async def rescore_run(
    store: ResultStore, run_id: str, client: Any = None, judge_model: str | None = None
) -> int:
    """Re-score every successful cell of a finished run without new model calls (judge calls aside)."""
    issues = store.issues(run_id)
    df = store.results_df(run_id)
    df = df[df["error_type"] == ""]
    updates = []
    for row in df.itertuples(index=False):
        issue = issues.get(row.issue_id)
        if issue is None:
            continue
        parsed = json.loads(row.parsed) if isinstance(row.parsed, str) and row.parsed else None
        scored = await score_row(
            client, issue, row.mode, row.text or "", parsed, row.parse_error or None, judge_model
        )
        updates.append(
            (
                scored["score"],
                scored["judge_score"],
                scored["scores"],
                row.issue_id,
                row.model,
                row.mode,
                int(row.repeat),
            )
        )
    store.update_scores(run_id, updates)
    return len(updates)
