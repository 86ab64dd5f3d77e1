"""Winners → ``[routing]`` in orchestrator.toml, cascades, and replay of routing policies from logged results.

Protocol: winners are picked on the DEV split of a run (:func:`select_winners`), written back into the
config with their provenance (:func:`write_routing`, only ``[routing]`` changes), and any policy is judged
on the held-out TEST split from the logged results, with no new calls (:func:`replay`,
:func:`cascade_curve`).

The statistics (means over issues with repeats averaged first, clustered bootstrap CIs, paired tests, list
cost per issue) come from :mod:`orchestrator.analysis`; this module only decides.

Objectives of :func:`select_winners` (models with fewer than ``min_n`` scored issues never qualify; ties are
broken by cost, then p50 latency, then name; an unknown cost ranks after every known one):

- ``quality``: the best mean.
- ``cheapest-tied``: the cheapest model statistically tied with the best (:func:`analysis.tied_with_best`,
  Holm-corrected paired tests against the best); then the other tied models by cost, then the rest by mean.
- ``quality-under-cost``: the best mean among models whose cost per issue is known and at most
  ``max_cost_per_issue``; only those models are fallbacks.
- ``quality-per-dollar``: the highest mean / cost per issue. A free model (cost 0) would have an infinite
  ratio, so it ranks first only when its mean reaches the lower CI bound of the best model (about as good,
  and free); a free model below that bound is priced at the cheapest paid model's cost for the ratio, so
  it has to compete on quality with the cheapest paid option. Models of unknown cost rank last, by mean.

Fallbacks are the next ``n_fallbacks`` models in the objective's order.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import stat
import tempfile
import tomllib
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OrchestratorError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..types import Completion, Issue

__all__ = [
    "OBJECTIVES",
    "ReplayReport",
    "RoutingError",
    "Selection",
    "Selections",
    "cascade_curve",
    "complete_cascade",
    "format_replay",
    "parse_policy",
    "replay",
    "routing_entry",
    "select_winners",
    "self_check",
    "write_routing",
]

OBJECTIVES = ("quality", "cheapest-tied", "quality-under-cost", "quality-per-dollar")
# The keys write_routing owns in a [routing.<mode>] table; any other key there (a user's cascade, notes) stays.
MANAGED_KEYS = (
    "primary",
    "fallbacks",
    "objective",
    "reason",
    "run_id",
    "dataset",
    "split",
    "score",
    "ci",
    "cost_per_issue",
    "n",
    "date",
)


class RoutingError(OrchestratorError, ValueError):
    """Routing cannot be decided, written or replayed as asked; the message says why and what to do."""


# ============================================================================================ self-check


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def self_check(mode: str, text: str | None, parsed: Any = None, parse_error: str | None = None) -> float:
    """A cheap, gold-free check of one answer, in [0, 1]; the cascade escalates when it is below a threshold.

    - classify: 0 when the answer failed to parse into the label schema, else 1.
    - fix: 0.5 for naming a file path + 0.5 for a code change (a unified diff or a fenced code block).
    - summarize: 0 when empty, 1 for 10-200 words, else 0.3.
    - explain: 0 when empty, 1 for 30-300 words, else 0.3.

    ``parsed`` may be a dict or its JSON text (as stored in the results database); NaN reads as missing.
    """
    text = "" if _missing(text) else str(text)
    parse_error = None if _missing(parse_error) or parse_error == "" else str(parse_error)
    if mode == "classify":
        if parse_error is not None:
            return 0.0
        if isinstance(parsed, dict):
            return 1.0
        if isinstance(parsed, str) and parsed.strip() not in ("", "null"):
            try:
                return 1.0 if isinstance(json.loads(parsed), dict) else 0.0
            except json.JSONDecodeError:
                return 0.0
        if not text.strip():
            return 0.0
        from ..modes import CLASSIFY_SCHEMA, parse_structured

        value, error = parse_structured(text, CLASSIFY_SCHEMA)
        return 1.0 if value is not None and error is None else 0.0
    if mode == "fix":
        from ..scoring import extract_paths, has_code_change

        score = 0.5 if extract_paths(text) else 0.0
        return score + (0.5 if has_code_change(text)["has_code_change"] else 0.0)
    bounds = {"summarize": (10, 200), "explain": (30, 300)}
    if mode in bounds:
        words = len(text.split())
        if words == 0:
            return 0.0
        lo, hi = bounds[mode]
        return 1.0 if lo <= words <= hi else 0.3
    raise ValueError(f"no self-check for mode {mode!r}; known: classify, fix, summarize, explain")


# ============================================================================================== cascade


def _cascade_models(cascade: Mapping[str, Any]) -> tuple[list[str], float]:
    models = [str(m) for m in cascade.get("models", [])]
    if not models:
        raise RoutingError(f"a cascade needs models = [cheap, ..., strong]; got {dict(cascade)!r}")
    threshold = float(cascade.get("threshold", 0.5))
    if not 0.0 <= threshold <= 1.0:
        raise RoutingError(f"cascade threshold must be in [0, 1], got {threshold}")
    return models, threshold


async def complete_cascade(
    client: Any, prompt_or_issue: Issue | str | None, mode: str, cascade: Mapping[str, Any], **kw: Any
) -> Completion:
    """Ask the cascade's models in order; return the first answer whose :func:`self_check` reaches the
    threshold (else the last model's answer).

    ``cascade`` is ``{"models": [cheap, ..., strong], "threshold": 0.5}``. The returned completion's
    ``fallback_path`` lists every model called (including any configured fallbacks a call went through),
    ``cost_usd`` is summed over the calls (None when any cost is unknown) and ``latency_s`` too. A model
    whose whole chain fails counts as a failed check: the next model is asked (the last one's error is raised).
    """
    from .. import errors as E

    if "model" in kw:
        raise TypeError("complete_cascade() takes its models from cascade['models'], not model=")
    models, threshold = _cascade_models(cascade)
    path: list[str] = []
    costs: list[float | None] = []
    latency = 0.0
    chosen: Completion | None = None
    for i, model_id in enumerate(models):
        last = i == len(models) - 1
        try:
            completion = await client.complete(prompt_or_issue, model=model_id, mode=mode, **kw)
        except E.BudgetExceededError:
            raise
        except E.ProviderError as exc:
            path.extend(getattr(exc, "fallback_path", None) or [model_id])
            if last:
                exc.fallback_path = list(path)  # type: ignore[attr-defined]
                raise
            continue
        path.extend(completion.fallback_path or [model_id])
        costs.append(completion.cost_usd)
        latency += completion.latency_s
        chosen = completion
        if last or self_check(mode, completion.text, completion.parsed, completion.parse_error) >= threshold:
            break
    assert chosen is not None  # the loop either breaks with an answer or raises on the last model
    total = None if any(c is None for c in costs) else float(sum(c for c in costs if c is not None))
    return chosen.model_copy(update={"fallback_path": path, "cost_usd": total, "latency_s": latency})


# ============================================================================================ selection


@dataclass
class Selection:
    """The routing chosen for one mode, with the numbers behind it (from the dev split)."""

    mode: str
    model: str
    fallbacks: list[str]
    objective: str
    reason: str
    score: float
    ci: tuple[float, float]
    cost_per_issue: float | None
    latency_p50: float | None
    n: int
    cascade: dict[str, Any] | None = None


class Selections(dict):
    """``{mode: Selection}``; ``skipped`` maps each mode that got no winner to the reason, ``split`` names the
    rows used ("dev", or "all" when ``allow_any_split`` let unlabelled rows through)."""

    def __init__(self, *args: Any, skipped: dict[str, str] | None = None, split: str = "dev", **kw: Any):
        super().__init__(*args, **kw)
        self.skipped: dict[str, str] = dict(skipped or {})
        self.split = split


def _split_rows(df: pd.DataFrame, split: str, allow_any_split: bool) -> tuple[pd.DataFrame, str]:
    """The rows of ``split``. Without split labels (or without any ``split`` row) refuse, unless
    ``allow_any_split`` (then every row is used and the returned label is "all")."""
    labels = df["split"].astype("string").fillna("") if "split" in df.columns else None
    has_labels = labels is not None and bool((labels != "").any())
    if not has_labels:
        if allow_any_split:
            return df, "all"
        raise RoutingError(
            f"the results carry no split labels, so the {split} rows cannot be told apart: choose winners on "
            "dev and judge them on test (label the dataset's issues with split = dev/test), or pass "
            "allow_any_split=True (CLI --allow-any-split) to use every row, knowing that numbers measured on "
            "the issues the winners were picked on are optimistic"
        )
    sub = df[(labels == split).to_numpy(dtype=bool)]
    if sub.empty:
        if allow_any_split:
            return df, "all"
        present = sorted({str(s) for s in labels.unique() if s})
        raise RoutingError(
            f"no {split!r} rows in the results (splits present: {', '.join(present)}); run the grid on the "
            f"{split} split, or pass allow_any_split=True (CLI --allow-any-split) to use every row"
        )
    return sub, split


def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _fnum(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def fmt_cost(c: float | None) -> str:
    if _nan(c):
        return "cost unknown"
    if c == 0:
        return "$0.0000"
    if abs(c) < 0.001:
        return f"${c:.6f}"
    return f"${c:.4f}"


def _fmt_score(row: Mapping[str, Any]) -> str:
    return f"{row['mean']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _tiebreak(row: Mapping[str, Any]) -> tuple:
    cost, lat = _fnum(row["cost_per_issue"]), _fnum(row["latency_p50"])
    return (
        math.isnan(cost),
        0.0 if math.isnan(cost) else cost,
        math.isnan(lat),
        0.0 if math.isnan(lat) else lat,
        str(row["model"]),
    )


def _by_quality(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(rows, key=lambda r: (-float(r["mean"]), *_tiebreak(r)))


def select_winners(
    df: pd.DataFrame,
    objective: str = "cheapest-tied",
    *,
    max_cost_per_issue: float | None = None,
    min_n: int = 10,
    n_fallbacks: int = 2,
    allow_any_split: bool = False,
    modes: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> Selections:
    """Pick a primary model and ordered fallbacks per mode from the DEV rows of a results frame.

    See the module docstring for the objectives. Scores follow :func:`analysis.summary_table` (repeats
    averaged per issue, failed cells left out and reported as the error rate); ``n`` is the number of
    scored issues. Modes where no model qualifies are left out and listed in ``Selections.skipped``.
    """
    from .. import analysis

    if objective not in OBJECTIVES:
        raise RoutingError(f"unknown objective {objective!r}; choose one of: {', '.join(OBJECTIVES)}")
    if objective == "quality-under-cost" and max_cost_per_issue is None:
        raise RoutingError(
            "objective quality-under-cost needs a cost cap: max_cost_per_issue (CLI --max-cost-per-issue USD)"
        )
    if min_n < 1:
        raise RoutingError(f"min_n must be >= 1, got {min_n}")
    rows, split_used = _split_rows(df, "dev", allow_any_split)
    table = analysis.summary_table(rows, n_boot=n_boot, seed=seed)
    wanted = list(modes) if modes is not None else sorted({str(m) for m in table["mode"].dropna()})
    out = Selections(split=split_used)
    for mode in wanted:
        stats = table[table["mode"] == mode].to_dict("records")
        if not stats:
            out.skipped[mode] = f"{mode}: no results in the {split_used} rows"
            continue
        eligible = [r for r in stats if int(r["n_scored_issues"]) >= min_n and not _nan(_fnum(r["mean"]))]
        excluded = [
            f"{r['model']} (n={int(r['n_scored_issues'])} < {min_n})"
            for r in stats
            if int(r["n_scored_issues"]) < min_n
        ]
        if not eligible:
            out.skipped[mode] = (
                f"{mode}: no model has >= {min_n} scored issues on {split_used} ({', '.join(excluded)})"
            )
            continue
        names = {str(r["model"]) for r in eligible}
        mode_rows = rows[(rows["mode"] == mode) & rows["model"].isin(names)]
        picked = _rank(objective, eligible, mode_rows, mode, max_cost_per_issue, n_boot, seed, excluded)
        if picked is None:
            out.skipped[mode] = f"{mode}: " + "; ".join(excluded)
            continue
        order, why = picked
        win = order[0]
        notes = [
            why,
            f"{_fmt_score(win)} at {fmt_cost(_fnum(win['cost_per_issue']))}/issue, "
            f"n={int(win['n_scored_issues'])}",
        ]
        if float(win.get("error_rate", 0) or 0) > 0:
            notes.append(f"error rate {float(win['error_rate']):.0%}")
        if excluded:
            notes.append("excluded: " + ", ".join(excluded))
        cost = _fnum(win["cost_per_issue"])
        lat = _fnum(win["latency_p50"])
        out[mode] = Selection(
            mode=mode,
            model=str(win["model"]),
            fallbacks=[str(r["model"]) for r in order[1 : 1 + n_fallbacks]],
            objective=objective,
            reason=f"{mode}: {win['model']} — " + "; ".join(notes),
            score=float(win["mean"]),
            ci=(float(win["ci_low"]), float(win["ci_high"])),
            cost_per_issue=None if math.isnan(cost) else cost,
            latency_p50=None if math.isnan(lat) else lat,
            n=int(win["n_scored_issues"]),
        )
    return out


def _rank(
    objective: str,
    eligible: list[dict[str, Any]],
    mode_rows: pd.DataFrame,
    mode: str,
    cap: float | None,
    n_boot: int,
    seed: int,
    excluded: list[str],
) -> tuple[list[dict[str, Any]], str] | None:
    """The eligible models in the objective's order, and the winner's reason (None: nobody qualifies)."""
    from .. import analysis

    k = len(eligible)
    best = _by_quality(eligible)[0]
    best_txt = f"{best['model']} {_fmt_score(best)}"
    if objective == "quality":
        order = _by_quality(eligible)
        return order, f"best mean of {k} model{'s' * (k != 1)}"
    if objective == "cheapest-tied":
        tied_names = analysis.tied_with_best(mode_rows, mode, n_boot=n_boot, seed=seed)
        by_name = {str(r["model"]): r for r in eligible}
        tied = sorted(
            (by_name[m] for m in tied_names if m in by_name),
            key=lambda r: (*_tiebreak(r)[:4], -float(r["mean"]), str(r["model"])),
        )
        if not tied:  # no paired data against the best: fall back to the best alone
            tied = [best]
        rest = _by_quality(r for r in eligible if r not in tied)
        order = tied + rest
        n_tied = len(tied)
        if order[0]["model"] == best["model"]:
            why = (
                f"the best of {k} model{'s' * (k != 1)} and the cheapest of the {n_tied} statistically tied "
                f"with it"
                if n_tied > 1
                else f"the best of {k} model{'s' * (k != 1)}; none is statistically tied with it"
            )
        else:
            why = f"cheapest of {n_tied} models statistically tied with the best ({best_txt})"
        return order, why
    if objective == "quality-under-cost":
        assert cap is not None
        under = [
            r for r in eligible if not _nan(_fnum(r["cost_per_issue"])) and float(r["cost_per_issue"]) <= cap
        ]
        over = [
            f"{r['model']} ({fmt_cost(_fnum(r['cost_per_issue']))}/issue)" for r in eligible if r not in under
        ]
        if over:
            excluded.append(f"over the {fmt_cost(cap)}/issue cap or of unknown cost: " + ", ".join(over))
        if not under:
            return None
        order = _by_quality(under)
        why = f"best mean of {len(under)} model{'s' * (len(under) != 1)} at <= {fmt_cost(cap)}/issue"
        if order[0]["model"] != best["model"]:
            why += f" (best overall: {best_txt} at {fmt_cost(_fnum(best['cost_per_issue']))}/issue)"
        return order, why
    # quality-per-dollar
    floor = float(best["ci_low"]) if not _nan(_fnum(best["ci_low"])) else float(best["mean"])
    paid = [
        float(r["cost_per_issue"])
        for r in eligible
        if not _nan(_fnum(r["cost_per_issue"])) and float(r["cost_per_issue"]) > 0
    ]
    cheapest_paid = min(paid) if paid else None

    def key(r: Mapping[str, Any]) -> tuple:
        cost, mean = _fnum(r["cost_per_issue"]), float(r["mean"])
        if math.isnan(cost):
            return (2, -mean, *_tiebreak(r))
        if cost == 0 and mean >= floor:
            return (0, -mean, *_tiebreak(r))
        effective = cost if cost > 0 else cheapest_paid
        value = mean / effective if effective else mean
        return (1, -value, *_tiebreak(r))

    order = sorted(eligible, key=key)
    win = order[0]
    cost = _fnum(win["cost_per_issue"])
    if cost == 0 and float(win["mean"]) >= floor:
        why = (
            f"free and within the best's CI (mean >= {floor:.2f}, the lower bound of {best_txt}); "
            f"highest quality per dollar of {k} model{'s' * (k != 1)}"
        )
    elif math.isnan(cost):
        why = f"no model of {k} has a known cost; best mean"
    else:
        eff = cost if cost > 0 else cheapest_paid
        ratio = f"{float(win['mean']) / eff:,.0f} score/$" if eff else "free"
        why = f"highest quality per dollar of {k} model{'s' * (k != 1)} ({ratio}; best: {best_txt})"
    return order, why


# ============================================================================================ write-back


def _round_sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def routing_entry(
    selection: Selection | Mapping[str, Any], provenance: Mapping[str, Any] | None = None
) -> dict:
    """The ``[routing.<mode>]`` table for a selection (or a ready routing dict), with its provenance."""
    prov = dict(provenance or {})
    when = prov.get("date") or date.today()
    if isinstance(when, str):
        when = date.fromisoformat(when)
    if isinstance(selection, Selection):
        entry: dict[str, Any] = {
            "primary": selection.model,
            "fallbacks": list(selection.fallbacks),
            "objective": selection.objective,
            "reason": " ".join(selection.reason.split()),
        }
        for key in ("run_id", "dataset", "split"):
            if prov.get(key) is not None:
                entry[key] = str(prov[key])
        entry["score"] = round(selection.score, 4)
        entry["ci"] = [round(selection.ci[0], 4), round(selection.ci[1], 4)]
        if selection.cost_per_issue is not None and not math.isnan(selection.cost_per_issue):
            entry["cost_per_issue"] = _round_sig(selection.cost_per_issue)
        entry["n"] = int(selection.n)
        entry["date"] = when
        if selection.cascade:
            entry["cascade"] = dict(selection.cascade)
        return entry
    entry = dict(selection)
    if not entry.get("primary") and not entry.get("cascade"):
        raise RoutingError(f"a routing entry needs primary = MODEL (or a cascade); got {entry!r}")
    entry.setdefault("fallbacks", [])
    for key in ("run_id", "dataset", "split"):
        if prov.get(key) is not None:
            entry.setdefault(key, str(prov[key]))
    if provenance is not None:
        entry.setdefault("date", when)
    return entry


_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_HEADER = re.compile(rf"^[ \t]*\[\[?[ \t]*({_KEY})(?:[ \t]*\.[ \t]*{_KEY})*[ \t]*\]\]?[ \t]*(?:#.*)?$")


def _unquote(key: str) -> str:
    if key.startswith('"'):
        return json.loads(key)
    if key.startswith("'"):
        return key[1:-1]
    return key


def _headers(lines: list[str]) -> list[tuple[int, str]]:
    """(line index, first key of the header) for every table header outside multi-line strings."""
    out: list[tuple[int, str]] = []
    in_string: str | None = None
    for i, line in enumerate(lines):
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        m = _HEADER.match(line.rstrip("\r\n"))
        if m:
            out.append((i, _unquote(m.group(1))))
            continue
        if line.lstrip().startswith("#"):
            continue
        for delim in ('"""', "'''"):
            if line.count(delim) % 2 == 1:
                in_string = delim
                break
    return out


def _is_blank_or_comment(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith("#")


def _plain(value: Any) -> Any:
    return value.unwrap() if hasattr(value, "unwrap") else value


def _render(old_text: str, entries: Mapping[str, Mapping[str, Any]], path: Path) -> str:
    """``old_text`` with the ``[routing]`` tables for ``entries`` set; every byte outside them kept."""
    import tomlkit
    from tomlkit.items import InlineTable, Table

    lines = old_text.splitlines(keepends=True)
    heads = _headers(lines)
    routing_at = [i for i, (_, key) in enumerate(heads) if key == "routing"]
    if not routing_at:
        if "routing" in tomllib.loads(old_text):
            raise RoutingError(
                f"{path}: routing is written as dotted keys or an inline table; rewrite it as "
                "[routing.<mode>] tables so it can be updated in place"
            )
        start = end = core_end = len(lines)
        region = ""
    else:
        first, last = routing_at[0], routing_at[-1]
        if last - first + 1 != len(routing_at):
            raise RoutingError(
                f"{path}: the [routing] tables are not one block (another table sits between them); "
                "move them together so they can be rewritten without touching the rest"
            )
        start = heads[first][0]
        end = heads[last + 1][0] if last + 1 < len(heads) else len(lines)
        core_end = end
        while core_end > start + 1 and _is_blank_or_comment(lines[core_end - 1]):
            core_end -= 1
        region = "".join(lines[start:core_end])
    doc = tomlkit.parse(region)
    if "routing" not in doc:
        doc.add("routing", tomlkit.table())
    routing = doc["routing"]
    for mode, entry in entries.items():
        current = routing.get(mode)
        if isinstance(current, Table):
            for key in MANAGED_KEYS:
                if key in current and key not in entry:
                    del current[key]
            for key, value in entry.items():
                if key in current and _plain(current[key]) == value:
                    continue
                current[key] = value
            continue
        if isinstance(current, InlineTable) or current is not None:
            del routing[mode]
        table = tomlkit.table()
        for key, value in entry.items():
            table.add(key, value)
        routing.add(mode, table)
    new_region = tomlkit.dumps(doc)
    if new_region and not new_region.endswith(("\n", "\r\n")):
        new_region += "\n"
    head = "".join(lines[:start])
    if not routing_at and head:
        if not head.endswith(("\n", "\r\n")):
            head += "\n"
        if not head.endswith(("\n\n", "\r\n\r\n")):
            head += "\n"
    return head + new_region + "".join(lines[core_end:end]) + "".join(lines[end:])


def _check_config(new_text: str, old_text: str, entries: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    """Refuse to write a file that does not load, changes anything outside [routing], or routes to a model
    the config does not define."""
    from ..config import config_from_dict

    try:
        new = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - a bug here, never the user's input
        raise RoutingError(f"{path}: the rewritten routing does not parse ({exc}); nothing written") from None
    old = tomllib.loads(old_text)
    if {k: v for k, v in new.items() if k != "routing"} != {k: v for k, v in old.items() if k != "routing"}:
        raise RoutingError(f"{path}: rewriting [routing] would change other tables; nothing written")
    cfg = config_from_dict(new, path)
    unknown = []
    for mode, entry in entries.items():
        named = [entry.get("primary"), *entry.get("fallbacks", [])]
        cascade = entry.get("cascade")
        if isinstance(cascade, Mapping):
            named += list(cascade.get("models", []))
        unknown += [f"{m} ({mode})" for m in named if m and m not in cfg.models]
    if unknown:
        raise RoutingError(
            f"{path}: routing names models the config does not define: {', '.join(unknown)}; add them under "
            "[models] first (nothing written)"
        )


def write_routing(
    config_path: str | os.PathLike[str],
    selections: Mapping[str, Selection | Mapping[str, Any]],
    provenance: Mapping[str, Any] | None = None,
    write: bool = False,
) -> str:
    """Set ``[routing.<mode>]`` for each selection in the config file; return the unified diff of the file.

    Only the routing tables change (round-tripped with tomlkit, so comments, order and every other byte
    stay; keys of a mode table that are not routing's own, such as a hand-written cascade, are kept).
    ``provenance``: ``run_id``, ``dataset``, ``split`` and ``date`` (default today). Nothing is written
    unless ``write``; then the file is replaced atomically (temporary file, same mode). An empty diff
    means the routing is already as selected.

    Concurrent edits: just before replacing, the file is compared with what was spliced from and spliced
    again if it changed (10 attempts, then a RoutingError: being edited, nothing written). On Linux the new
    file is swapped in with ``renameat2(RENAME_EXCHANGE)``; the file swapped out is deleted only once no
    process has it open for writing (a read lease) and it equals what was spliced from, else it is swapped
    back, and if ours was edited meanwhile too both are kept (the user's in place, ours as
    ``<name>.routing-conflict``, named in the RoutingError). So no save by rename and no in-place write is
    lost. Limits: where leases are unavailable (file of another owner, hard-linked, some filesystems) an
    in-place writer that opened the file before the swap is waited for only 5 ms; without renameat2 a write
    between the last compare and ``os.replace`` is lost; an editor saving what it read before our write
    drops the routing (never the reverse).
    """
    import logging
    import random
    import time

    path = Path(config_path)
    if not path.is_file():
        raise RoutingError(f"config file not found: {path}")
    from ..config import MODES

    entries = {}
    for mode, sel in selections.items():
        if mode not in MODES:
            raise RoutingError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
        entries[mode] = routing_entry(sel, provenance)
    log = logging.getLogger("orchestrator")
    written = ""  # the diff once our version has been swapped in
    for attempt in range(_WRITE_ATTEMPTS + 1):
        old_bytes = path.read_bytes()
        old_text = old_bytes.decode("utf-8")
        new_text = _render(old_text, entries, path)
        _check_config(new_text, old_text, entries, path)
        if new_text == old_text:  # as selected (after our write: kept by whoever saved since)
            return written
        diff = "".join(
            difflib.unified_diff(
                old_text.splitlines(keepends=True),
                new_text.splitlines(keepends=True),
                fromfile=f"a/{path.name}",
                tofile=f"b/{path.name}",
            )
        )
        if not write:
            return diff
        if attempt == _WRITE_ATTEMPTS:
            break
        new_bytes = new_text.encode("utf-8")
        if _atomic_write(path, new_bytes, old_bytes):
            if path.read_bytes() == new_bytes:
                return diff
            written = diff  # saved over since: splice again unless that save kept the routing
            log.debug("%s was saved over right after the routing was written; checking it", path)
            continue
        log.debug("%s changed while the routing was written; retrying (attempt %d)", path, attempt + 2)
        time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # jitter: out of step with a periodic writer
    raise RoutingError(
        f"{path} kept changing while the routing was written ({_WRITE_ATTEMPTS} attempts): it is being "
        "edited, so nothing was written; save or close it and run again"
    )


_WRITE_ATTEMPTS = 10
# Writers that opened the old file just before the swap get this long to reach it before the first check.
_SETTLE = 0.005
# How long a process may keep the swapped-out file open for writing before we give up and swap it back.
_QUIET_TIMEOUT = 0.25


def _atomic_write(path: Path, data: bytes, expected: bytes) -> bool:
    """Replace ``path`` with ``data`` if it still holds ``expected``; False (nothing replaced) if it changed.

    Raises RoutingError when the file changed under the swap and our version was edited too: the user's
    version stays at ``path`` and ours is kept beside it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    disposable = True  # False while tmp may hold the user's content: then it is never deleted
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        renameat2 = _renameat2()
        if path.read_bytes() != expected:
            return False
        if renameat2 is None or not _exchange(renameat2, tmp, path):
            os.replace(tmp, path)  # the compare above is the only guard here
            return True
        disposable = False
        # tmp now holds what was at path: the quick look catches a rename-save at once, the settled one a
        # write through a descriptor opened before the swap.
        if Path(tmp).read_bytes() == expected:
            theirs, quiet = _read_settled(tmp)
            if quiet and theirs == expected:
                disposable = True
                return True
        if not _exchange(renameat2, tmp, path):  # pragma: no cover - it worked a moment ago
            raise OSError(f"cannot swap {tmp} back to {path}")
        ours, quiet = _read_settled(tmp)  # edits made to our version while it was in place
        if quiet and ours == data:
            disposable = True
            return False
        kept = _keep_beside(tmp, path)
        raise RoutingError(
            f"{path} was edited while the routing was written, and so was the routing's version: yours is "
            f"at {path} (unchanged), the routing's (with any edits made to it meanwhile) is at {kept}; "
            "merge them by hand, or delete it and run again"
        )
    finally:
        if disposable:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        elif os.path.exists(tmp):  # interrupted mid-swap: keep what may be the user's content
            _keep_beside(tmp, path)


def _renameat2() -> Any:
    """libc's ``renameat2`` (glibc >= 2.28), or None where there is none."""
    import ctypes
    import sys

    if sys.platform != "linux":
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(renameat2: Any, a: str | Path, b: str | Path) -> bool:
    """Swap the files at ``a`` and ``b`` atomically; False if the kernel or filesystem cannot."""
    import ctypes
    import errno

    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _read_settled(path: str) -> tuple[bytes, bool]:
    """The bytes of a file nobody can open by name any more, once no process has it open for writing, and
    whether it got there: False if one still had it open after the timeout (where leases are unavailable,
    only the settle delay is waited)."""
    import time

    deadline = time.monotonic() + _QUIET_TIMEOUT
    time.sleep(_SETTLE)
    while True:
        fd = os.open(path, os.O_RDONLY)
        try:
            busy = _no_writers(fd) is False
        finally:
            os.close(fd)
        if not busy or time.monotonic() >= deadline:
            return Path(path).read_bytes(), not busy
        time.sleep(0.001)


def _no_writers(fd: int) -> bool | None:
    """Whether no process has the file open for writing (a read lease is granted only then); None where
    leases are unavailable. The lease is dropped at once: its break would signal this process."""
    try:
        import fcntl

        setlease, rdlck, unlck = fcntl.F_SETLEASE, fcntl.F_RDLCK, fcntl.F_UNLCK
    except (ImportError, AttributeError):
        return None
    if os.fstat(fd).st_nlink != 1:  # reachable under another name: a writer opening it would break the lease
        return None
    try:
        fcntl.fcntl(fd, setlease, rdlck)
    except BlockingIOError:
        return False
    except OSError:  # not the owner, or the filesystem has no leases
        return None
    fcntl.fcntl(fd, setlease, unlck)
    return True


def _keep_beside(tmp: str, path: Path) -> Path:
    """Move ``tmp`` to ``<path>.routing-conflict`` (or ``.1``, ``.2``... : an earlier one is never overwritten)."""
    for i in range(1000):
        kept = path.with_name(f"{path.name}.routing-conflict" + (f".{i}" if i else ""))
        try:
            os.link(tmp, kept)
        except FileExistsError:
            continue
        except OSError:  # no hard links here
            if kept.exists():
                continue
            os.rename(tmp, kept)
            return kept
        os.unlink(tmp)
        return kept
    raise RoutingError(f"{path}: too many .routing-conflict files beside it; remove them")  # pragma: no cover


# =============================================================================================== replay


@dataclass
class _Cell:
    repeat: int
    score: float
    cost: float  # list cost; NaN when unknown
    errored: bool
    text: Any
    parsed: Any
    parse_error: Any


@dataclass
class _Policy:
    kind: str  # fixed | chain | cascade
    models: list[str]
    threshold: float | None = None

    def describe(self) -> str:
        if self.kind == "cascade":
            return " > ".join(self.models) + f" @ {self.threshold:g}"
        if self.kind == "chain" and len(self.models) > 1:
            return f"{self.models[0]} (fallbacks {', '.join(self.models[1:])})"
        return self.models[0]


@dataclass
class ReplayReport:
    """A policy replayed on logged results.

    ``table``: one row per mode: policy, n_issues (issues in the mean), n_excluded (issues left out because a
    cell the policy needs is missing), n_missing_cells, n_unscored (the policy's answer has no score: a
    failed call or an unscorable cell), mean, ci_low, ci_high (percentile bootstrap over issues), cost_per_issue
    (list price, over issues of known cost; cost_known is their share), escalation_rate (cascade: share of
    answers escalated; fallback chain: share that fell back), best_model (the best single model of the split),
    best_mean, best_cost_per_issue, n_compared, quality_kept (policy mean / best mean) and cost_share (policy
    cost / best cost), both on the issues where both have a value.
    ``missing``: every needed (issue_id, model, mode) cell the results lack; ``missing_per_mode`` counts them.
    ``per_issue``: mode, issue_id, score, cost, escalated for every issue in a mean.
    """

    table: pd.DataFrame
    missing: list[tuple[str, str, str]]
    missing_per_mode: dict[str, int]
    per_issue: pd.DataFrame
    split: str
    policies: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return format_replay(self)


# Column conventions of orchestrator.analysis.summary_table: an absent column reads as unknown, a cell failed
# when error_type is a non-empty string, cost is at list price (a cache hit counts the cost it saved).


def _column(df: pd.DataFrame, col: str) -> np.ndarray:
    import numpy as np
    import pandas as pd

    if col not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _errored(df: pd.DataFrame) -> np.ndarray:
    import numpy as np

    if "error_type" not in df.columns:
        return np.zeros(len(df), dtype=bool)
    return (df["error_type"].astype("string").fillna("") != "").to_numpy(dtype=bool)


def _list_cost(df: pd.DataFrame) -> np.ndarray:
    import numpy as np

    cost = _column(df, "cost_usd")
    if "cost_saved_usd" in df.columns and "from_cache" in df.columns:
        saved = _column(df, "cost_saved_usd")
        hit = df["from_cache"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        cost = np.where(hit & ~np.isnan(saved), saved, cost)
    return cost


def _cells(rows: pd.DataFrame) -> dict[tuple[str, str, str], list[_Cell]]:
    """(mode, issue_id, model) → the cell's repeats, sorted by repeat."""
    import numpy as np

    n = len(rows)
    score = _column(rows, "score")
    cost = _list_cost(rows)
    err = _errored(rows)
    repeat = _column(rows, "repeat")
    repeat = np.where(np.isnan(repeat), 0, repeat).astype(int)

    def col(name: str) -> list[Any]:
        return rows[name].tolist() if name in rows.columns else [None] * n

    out: dict[tuple[str, str, str], list[_Cell]] = {}
    for i, (mode, issue, model, text, parsed, perr) in enumerate(
        zip(
            col("mode"),
            col("issue_id"),
            col("model"),
            col("text"),
            col("parsed"),
            col("parse_error"),
            strict=True,
        )
    ):
        if _missing(mode) or _missing(issue) or _missing(model):
            continue
        cell = _Cell(int(repeat[i]), float(score[i]), float(cost[i]), bool(err[i]), text, parsed, perr)
        out.setdefault((str(mode), str(issue), str(model)), []).append(cell)
    for cells in out.values():
        cells.sort(key=lambda c: c.repeat)
    return out


def _normalize_policy(policy: Any) -> dict[str, _Policy]:
    from ..config import MODES

    if not isinstance(policy, Mapping):
        raise RoutingError(f"a policy is a mapping of mode → model, routing entry or cascade; got {policy!r}")
    out: dict[str, _Policy] = {}
    for mode, spec in policy.items():
        if mode not in MODES:
            raise RoutingError(f"unknown mode {mode!r} in the policy (known: {', '.join(MODES)})")
        if isinstance(spec, str):
            out[mode] = _Policy("fixed", [spec])
        elif isinstance(spec, Selection):
            out[mode] = (
                _Policy("chain", [spec.model, *spec.fallbacks])
                if not spec.cascade
                else _Policy("cascade", *_cascade_models(spec.cascade))
            )
        elif isinstance(spec, Mapping) and isinstance(spec.get("cascade"), Mapping):
            models, threshold = _cascade_models(spec["cascade"])
            out[mode] = _Policy("cascade", models, threshold)
        elif isinstance(spec, Mapping) and spec.get("primary"):
            out[mode] = _Policy("chain", [str(spec["primary"]), *[str(m) for m in spec.get("fallbacks", [])]])
        elif isinstance(spec, Sequence) and spec and all(isinstance(m, str) for m in spec):
            out[mode] = _Policy("chain", list(spec))
        else:
            raise RoutingError(f"policy for {mode!r} is not a model, a routing entry or a cascade: {spec!r}")
    return out


def _pick(cells: list[_Cell], repeat: int) -> _Cell:
    for c in cells:
        if c.repeat == repeat:
            return c
    return cells[0]


def _eval_issue(
    pol: _Policy, mode: str, issue: str, cells: dict[tuple[str, str, str], list[_Cell]]
) -> tuple[float, float, float, list[tuple[str, str, str]]]:
    """(score, cost, escalated share, missing cells) of ``pol`` on one issue; repeats of the first model
    drive the answer, each averaged at the end (scores over the scored repeats)."""
    first = cells.get((mode, issue, pol.models[0]))
    if not first:
        return math.nan, math.nan, math.nan, [(issue, pol.models[0], mode)]
    scores, costs, escalated = [], [], []
    missing: list[tuple[str, str, str]] = []
    for repeat in (c.repeat for c in first):
        cost, score, moved = 0.0, math.nan, False
        for k, model in enumerate(pol.models):
            rows = cells.get((mode, issue, model))
            if not rows:
                missing.append((issue, model, mode))
                break
            cell = _pick(rows, repeat)
            # a failed call is not billed: the store records no cost for it
            cost += 0.0 if cell.errored and math.isnan(cell.cost) else cell.cost
            last = k == len(pol.models) - 1
            if pol.kind == "cascade":
                passed = self_check(mode, cell.text, cell.parsed, cell.parse_error) >= (pol.threshold or 0.0)
                if last or passed:
                    score = cell.score
                    break
            elif last or not cell.errored:
                score = cell.score
                break
            moved = True
        scores.append(score)
        costs.append(cost)
        escalated.append(1.0 if moved else 0.0)
    if missing:
        return math.nan, math.nan, math.nan, list(dict.fromkeys(missing))
    scored = [s for s in scores if not math.isnan(s)]
    mean_score = sum(scored) / len(scored) if scored else math.nan
    mean_cost = math.nan if any(math.isnan(c) for c in costs) else sum(costs) / len(costs)
    return mean_score, mean_cost, sum(escalated) / len(escalated), []


@dataclass
class _ModeResult:
    issues: list[str]
    scores: list[float]
    costs: list[float]
    escalated: list[float]
    excluded: int
    unscored: int
    missing: list[tuple[str, str, str]]

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else math.nan

    @property
    def cost(self) -> float:
        known = [c for c in self.costs if not math.isnan(c)]
        return sum(known) / len(known) if known else math.nan

    def by_issue(self) -> dict[str, tuple[float, float]]:
        return dict(zip(self.issues, zip(self.scores, self.costs, strict=True), strict=True))


def _eval_mode(pol: _Policy, mode: str, issues: list[str], cells: dict) -> _ModeResult:
    res = _ModeResult([], [], [], [], 0, 0, [])
    for issue in issues:
        score, cost, esc, missing = _eval_issue(pol, mode, issue, cells)
        if missing:
            res.excluded += 1
            res.missing.extend(missing)
            continue
        if math.isnan(score):
            res.unscored += 1
            continue
        res.issues.append(issue)
        res.scores.append(score)
        res.costs.append(cost)
        res.escalated.append(esc)
    return res


def _mode_index(cells: dict) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    issues: dict[str, set[str]] = {}
    models: dict[str, set[str]] = {}
    for mode, issue, model in cells:
        issues.setdefault(mode, set()).add(issue)
        models.setdefault(mode, set()).add(model)
    return ({m: sorted(v) for m, v in issues.items()}, {m: sorted(v) for m, v in models.items()})


def _best_single(
    mode: str, models: list[str], issues: list[str], cells: dict, min_n: int
) -> tuple[str, _ModeResult] | None:
    """The best single model on these issues: highest mean, then lowest cost, then name."""
    best: tuple[tuple, str, _ModeResult] | None = None
    for model in models:
        res = _eval_mode(_Policy("fixed", [model]), mode, issues, cells)
        if len(res.scores) < max(1, min_n):
            continue
        cost = res.cost
        key = (-res.mean, math.isnan(cost), 0.0 if math.isnan(cost) else cost, model)
        if best is None or key < best[0]:
            best = (key, model, res)
    return None if best is None else (best[1], best[2])


def _compare(policy: _ModeResult, best: _ModeResult) -> tuple[int, float, float]:
    """(n, quality kept, cost share) of the policy against the best model on their common issues."""
    p, b = policy.by_issue(), best.by_issue()
    common = [i for i in p if i in b]
    if not common:
        return 0, math.nan, math.nan
    p_mean = sum(p[i][0] for i in common) / len(common)
    b_mean = sum(b[i][0] for i in common) / len(common)
    priced = [i for i in common if not math.isnan(p[i][1]) and not math.isnan(b[i][1])]
    p_cost = sum(p[i][1] for i in priced) / len(priced) if priced else math.nan
    b_cost = sum(b[i][1] for i in priced) / len(priced) if priced else math.nan
    kept = p_mean / b_mean if b_mean > 0 else math.nan
    share = p_cost / b_cost if priced and b_cost > 0 else math.nan
    return len(common), kept, share


def _bootstrap_ci(values: list[float], n_boot: int, seed: int, label: str) -> tuple[float, float]:
    import numpy as np

    from ..analysis import bootstrap_means

    if not values or n_boot <= 0:
        return math.nan, math.nan
    rng = np.random.default_rng([int(seed), zlib.crc32(label.encode())])
    boot = bootstrap_means(np.asarray(values, dtype=np.float64), n_boot, rng)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(lo), float(hi)


def replay(
    df: pd.DataFrame,
    policy: Mapping[str, Any],
    *,
    split: str = "test",
    allow_any_split: bool = False,
    n_boot: int = 2000,
    seed: int = 0,
    min_n_best: int = 1,
) -> ReplayReport:
    """Replay a routing ``policy`` on the logged results of ``split`` (default: the held-out TEST split).

    ``policy`` maps each mode to a fixed model id (``{"classify": "m1"}``), a routing entry as in the toml
    (``{"primary": m, "fallbacks": [...]}``, a :class:`Selection`, or a whole ``[routing]`` table; a failed
    primary cell falls back to the next model like the client would), or a cascade
    (``{"cascade": {"models": [cheap, strong], "threshold": t}}``: when the logged cheap answer passes
    :func:`self_check`, its score and cost; else the strong model's score at cheap + strong cost).

    Per issue, repeats are averaged first; a failed call costs 0 (not billed; the store records no cost).
    An issue where a cell the policy needs is absent from the results is left out of that mode's mean and
    counted; every such cell is listed in ``missing``; nothing is imputed. The best single model of the
    split (highest mean over at least ``min_n_best`` scored issues) is the reference for quality kept and
    cost share.
    """
    import pandas as pd

    policies = _normalize_policy(policy)
    rows, split_used = _split_rows(df, split, allow_any_split)
    needs_text = any(p.kind == "cascade" for p in policies.values())
    if needs_text and "text" not in rows.columns:
        raise RoutingError(
            "replaying a cascade needs the logged answers (a 'text' column) for the self-check"
        )
    cells = _cells(rows)
    issues_by_mode, models_by_mode = _mode_index(cells)
    records, per_issue, missing_all = [], [], []
    missing_per_mode: dict[str, int] = {}
    for mode, pol in policies.items():
        issues = issues_by_mode.get(mode, [])
        res = _eval_mode(pol, mode, issues, cells)
        missing_all.extend(res.missing)
        missing_per_mode[mode] = len(res.missing)
        lo, hi = _bootstrap_ci(res.scores, n_boot, seed, mode)
        best = _best_single(mode, models_by_mode.get(mode, []), issues, cells, min_n_best)
        if best is not None:
            n_cmp, kept, share = _compare(res, best[1])
            best_name, best_mean, best_cost = best[0], best[1].mean, best[1].cost
        else:
            n_cmp, kept, share, best_name, best_mean, best_cost = (
                0,
                math.nan,
                math.nan,
                None,
                math.nan,
                math.nan,
            )
        costs = res.costs
        records.append(
            {
                "mode": mode,
                "policy": pol.describe(),
                "n_issues": len(res.scores),
                "n_excluded": res.excluded,
                "n_missing_cells": len(res.missing),
                "n_unscored": res.unscored,
                "mean": res.mean,
                "ci_low": lo,
                "ci_high": hi,
                "cost_per_issue": res.cost,
                "cost_known": (sum(not math.isnan(c) for c in costs) / len(costs)) if costs else math.nan,
                "escalation_rate": (sum(res.escalated) / len(res.escalated)) if res.escalated else math.nan,
                "best_model": best_name,
                "best_mean": best_mean,
                "best_cost_per_issue": best_cost,
                "n_compared": n_cmp,
                "quality_kept": kept,
                "cost_share": share,
            }
        )
        per_issue += [
            {"mode": mode, "issue_id": i, "score": s, "cost": c, "escalated": e}
            for i, s, c, e in zip(res.issues, res.scores, res.costs, res.escalated, strict=True)
        ]
    return ReplayReport(
        table=pd.DataFrame(records),
        missing=missing_all,
        missing_per_mode=missing_per_mode,
        per_issue=pd.DataFrame(per_issue, columns=["mode", "issue_id", "score", "cost", "escalated"]),
        split=split_used,
        policies={m: p.describe() for m, p in policies.items()},
    )


def cascade_curve(
    df: pd.DataFrame,
    mode: str,
    cheap: str,
    strong: str,
    thresholds: Iterable[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    *,
    split: str = "test",
    allow_any_split: bool = False,
    min_n_best: int = 1,
) -> pd.DataFrame:
    """The cost-quality curve of the cascade cheap → strong over self-check thresholds (RouteLLM-style).

    Columns: threshold, escalation_rate, mean, cost_per_issue, quality_kept, cost_share (against the best
    single model of the split, on common issues), n_issues, n_excluded. Threshold 0 never escalates; a
    threshold above 1 always does.
    """
    import pandas as pd

    rows, _ = _split_rows(df, split, allow_any_split)
    if "text" not in rows.columns:
        raise RoutingError("a cascade curve needs the logged answers (a 'text' column) for the self-check")
    cells = _cells(rows)
    issues_by_mode, models_by_mode = _mode_index(cells)
    issues = issues_by_mode.get(mode, [])
    best = _best_single(mode, models_by_mode.get(mode, []), issues, cells, min_n_best)
    out = []
    for t in thresholds:
        res = _eval_mode(_Policy("cascade", [cheap, strong], float(t)), mode, issues, cells)
        _, kept, share = _compare(res, best[1]) if best else (0, math.nan, math.nan)
        out.append(
            {
                "threshold": float(t),
                "escalation_rate": (sum(res.escalated) / len(res.escalated)) if res.escalated else math.nan,
                "mean": res.mean,
                "cost_per_issue": res.cost,
                "quality_kept": kept,
                "cost_share": share,
                "n_issues": len(res.scores),
                "n_excluded": res.excluded,
            }
        )
    return pd.DataFrame(out)


def parse_policy(text: str) -> dict[str, Any]:
    """A policy from its CLI form: ``fixed:classify=M,fix=M2`` or ``cascade:classify=CHEAP>STRONG@0.5``
    (``A>B>C@t`` for longer cascades; several modes separated by commas)."""
    kind, _, body = text.partition(":")
    if kind not in ("fixed", "cascade") or not body:
        raise RoutingError(
            f"unknown policy {text!r}: use winners, config, fixed:MODE=MODEL[,MODE=MODEL] or "
            "cascade:MODE=CHEAP>STRONG@THRESHOLD"
        )
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        mode, eq, value = part.partition("=")
        if not eq or not value:
            raise RoutingError(f"policy part {part!r}: expected MODE=...")
        mode = mode.strip()
        if kind == "fixed":
            out[mode] = value.strip()
            continue
        chain, at, threshold = value.rpartition("@")
        if not at:
            chain, threshold = value, "0.5"
        models = [m.strip() for m in chain.split(">") if m.strip()]
        if len(models) < 2:
            raise RoutingError(f"cascade {part!r}: expected MODE=CHEAP>STRONG@THRESHOLD")
        try:
            t = float(threshold)
        except ValueError:
            raise RoutingError(f"cascade {part!r}: threshold {threshold!r} is not a number") from None
        out[mode] = {"cascade": {"models": models, "threshold": t}}
    return out


def format_replay(report: ReplayReport) -> str:
    """The replay as a text table: per mode the policy's quality and cost, then how it compares with the best
    single model of the split (quality kept, cost share), then the missing cells (if any)."""

    def num(x: Any, spec: str) -> str:
        return "n/a" if _nan(x) or (isinstance(x, float) and math.isnan(x)) else format(x, spec)

    lines = [
        f"replay on the {report.split} split (issue means, 95% bootstrap CI over issues)",
        f"{'mode':<10} {'n':>4} {'excl':>4} {'score [95% CI]':<22} {'$/issue':>12} {'escal':>6} "
        f"{'kept':>6} {'cost':>6}  policy | best single model",
    ]
    for r in report.table.to_dict("records"):
        score = (
            f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            if not math.isnan(r["mean"]) and not math.isnan(r["ci_low"])
            else num(r["mean"], ".3f")
        )
        cost = fmt_cost(r["cost_per_issue"]) if not math.isnan(r["cost_per_issue"]) else "unknown"
        best = (
            f"{r['best_model']} {r['best_mean']:.3f} at {fmt_cost(r['best_cost_per_issue'])}/issue"
            if r["best_model"]
            else "none"
        )
        lines.append(
            f"{r['mode']:<10} {r['n_issues']:>4} {r['n_excluded']:>4} {score:<22} {cost:>12} "
            f"{num(r['escalation_rate'], '.0%'):>6} {num(r['quality_kept'], '.0%'):>6} "
            f"{num(r['cost_share'], '.0%'):>6}  {r['policy']} | {best}"
        )
    lines.append(
        "n: issues in the mean; excl: issues left out for a missing cell; escal: answers escalated (cascade) or "
        "fallen back; kept / cost: the policy's quality and cost as a share of the best single model's "
        "(n/a when that model is free)"
    )
    if report.missing:
        counts = ", ".join(f"{m}: {n}" for m, n in report.missing_per_mode.items() if n)
        lines.append(f"missing cells the policy needs ({counts}); their issues are left out, not imputed:")
        lines += [f"  {issue}  {model}  {mode}" for issue, model, mode in report.missing[:20]]
        if len(report.missing) > 20:
            lines.append(f"  ... and {len(report.missing) - 20} more")
    return "\n".join(lines)
