"""One grid cell: the model called for (issue, model, mode, repeat), the answer turned into a result row.

Shared by every executor (in process, on Ray workers): a cell is called the same way wherever it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import errors as E
from ..modes import get_mode
from ..types import Issue
from .rows import ResultRow
from .store import now_iso

if TYPE_CHECKING:
    from ..client.llm_client import LLMClient


async def call_cell(
    client: LLMClient,
    issue: Issue,
    model: str,
    mode: str,
    repeat: int,
    cache: bool,
    ledger: Any,
    run_id: str,
    stream: bool = True,
) -> tuple[ResultRow, Any] | None:
    """Call the model for one cell: (row without scores, completion or None on error), or None on budget."""
    spec = client.config.model_spec(model)
    overrides: dict[str, Any] = {}
    if repeat > 0:
        overrides["seed"] = (spec.seed or 0) + repeat
    mode_obj = get_mode(mode)
    label_field = mode_obj.scorer_params.get("field") if mode_obj.scorer == "label" else None
    row = ResultRow(
        run_id=run_id,
        issue_id=issue.id,
        model=model,
        mode=mode,
        repeat=repeat,
        repo=issue.repo,
        split=issue.split,
        gold_type=issue.gold.type if label_field is None else _text(issue.gold.value_of(label_field)),
        started_at=now_iso(),
        task=mode_obj.task_name,
        prompt=mode_obj.prompt,
        prompt_version=mode_obj.version,
    )
    try:
        completion = await client.complete(
            issue,
            model=model,
            mode=mode,
            repeat=repeat,
            cache="use" if cache else "off",
            ledger=ledger,
            stream=stream,
            **overrides,
        )
    except E.BudgetExceededError:
        return None
    except E.ProviderError as exc:
        row.error_type = exc.kind
        row.error_message = str(exc)
        if isinstance(exc, E.StreamInterruptedError):
            row.text = exc.partial_text  # what arrived before the stream broke, kept; the cell is an error
        row.attempts = exc.attempts
        row.fallback_path = exc.fallback_path
        row.charged_usd = getattr(exc, "charged_usd", None)
        return row, None
    except Exception as exc:  # a bug must not sink the run: record it on the cell
        row.error_type = "internal"
        row.error_message = E.redact(f"{type(exc).__name__}: {exc}")
        return row, None
    usage = completion.usage
    row.update(
        {
            "request_hash": completion.request_hash,
            "text": completion.text,
            "parsed": completion.parsed,
            "parse_error": completion.parse_error,
            "input_uncached": usage.input_uncached,
            "cache_read": usage.cache_read,
            "cache_write": usage.cache_write,
            "output": usage.output,
            "reasoning": usage.reasoning,
            "cost_usd": completion.cost_usd,
            "cost_saved_usd": completion.cost_saved_usd,
            "latency_s": completion.latency_s,
            "ttft_s": completion.ttft_s,
            "output_tps": completion.output_tps,
            "attempts": completion.attempts,
            "served_model": completion.served_model,
            "fallback_path": completion.fallback_path,
            "fallback_reasons": completion.fallback_reasons or None,
            "from_cache": completion.from_cache,
            "finish_reason": completion.finish_reason,
            "charged_usd": completion.charged_usd,
            "notes": completion.notes or None,
            "pred_type": _text((completion.parsed or {}).get(_label_key(mode_obj))),
        }
    )
    return row, completion


def _label_key(mode: Any) -> str | None:
    """The answer's field that holds a label: ``type`` for classify, ``label`` for a label task, else none."""
    if mode.scorer != "label":
        return None
    return mode.scorer_params.get("key", "type")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
