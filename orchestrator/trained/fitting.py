"""Fit (or load) the trained baselines a run needs, and hold them for the ``trained`` provider.

Protocol, so that no test issue reaches a fit:

- The training issues are the dev split of the dataset being run (``run_grid(training=...)``; the CLI
  passes the dataset's dev split when it runs ``--split test``), or every non-test issue of the file a
  model's ``options.train`` names. Any issue that is a test issue of the run is dropped from them.
- A training issue that the run also asks about is answered by a model fitted without it (``folds``-fold
  cross-fitting, default 5), so dev-split scores of a trained model are out-of-sample like the rest.
- A fit is stored as plain data under ``ORCHESTRATOR_HOME/trained/<kind>-<key>.npz``, the key hashing the
  kind, its parameters, the task's answer shape and every training issue's text and gold: the same data
  and settings load instead of refitting; any change refits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..types import Issue
from . import COMMON_OPTIONS, KINDS, Kind, kind_of
from .store import PlainDataError, load_plain, save_plain
from .text import issue_text

if TYPE_CHECKING:
    from ..config import Config, ModelSpec
    from ..modes import Mode

log = logging.getLogger("orchestrator")

PROVIDER = "trained"
DEFAULT_FOLDS = 5


@dataclass
class Fitted:
    """The models answering one (trained model, task): ``full`` fitted on every training issue, and for each
    training issue the run asks about, the fold model that did not see it."""

    full: Any
    held_out: dict[str, Any] = field(default_factory=dict)
    train_ids: frozenset[str] = frozenset()
    n_train: int = 0

    def answer(self, issue: Issue) -> str:
        model = self.held_out.get(issue.id, self.full) if issue.id else self.full
        return model.answer(issue)


FITTED: dict[tuple[str, str], Fitted] = {}  # (model id, task) → what answers it


def params_of(spec: ModelSpec) -> tuple[Kind, dict[str, Any]]:
    """The kind of a trained model and its parameters (the kind's defaults, with ``options`` over them)."""
    kind = kind_of(spec.model, spec.id)
    unknown = sorted(set(spec.options) - set(kind.defaults) - set(COMMON_OPTIONS))
    if unknown:
        raise ConfigError(
            f"model {spec.id!r}: unknown option {', '.join(map(repr, unknown))} for a {kind.name} model "
            f"(known: {', '.join([*kind.defaults, *COMMON_OPTIONS])})"
        )
    params = dict(kind.defaults)
    params.update({k: v for k, v in spec.options.items() if k in kind.defaults})
    return kind, params


def cannot_answer(spec: ModelSpec, mode: Mode) -> str | None:
    """Why ``spec`` cannot answer ``mode`` (None: it can)."""
    kind, _ = params_of(spec)
    if kind.answers(mode):
        return None
    return f"{spec.id} answers {kind.what} only, not {mode.task_name} (scorer {mode.scorer or 'none'!r})"


def training_key(kind: Kind, params: dict[str, Any], mode: Mode, issues: Sequence[Issue]) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps(
            [kind.name, params, mode.scorer, mode.scorer_params, mode.schema], sort_keys=True, default=str
        ).encode()
    )
    for issue in sorted(issues, key=lambda i: i.id):
        blob = [issue.id, issue_text(issue), issue.gold.model_dump(mode="json") if issue.gold else None]
        h.update(json.dumps(blob, sort_keys=True, ensure_ascii=True).encode())
    return h.hexdigest()[:20]


def model_path(home: Path, kind: Kind, key: str) -> Path:
    return Path(home) / "trained" / f"{kind.name}-{key}.npz"


def fit_or_load(home: Path, kind: Kind, mode: Mode, params: dict[str, Any], issues: Sequence[Issue]) -> Any:
    """The model of ``kind`` fitted on ``issues``: loaded from the home when stored, else fitted and stored."""
    cls = kind.model_class()
    if not kind.fitted:
        return cls(params)
    path = model_path(home, kind, training_key(kind, params, mode, issues))
    if path.exists():
        return load_model(path, kind)
    model = cls.fit(issues, mode, params)
    meta, arrays = model.to_plain()
    try:
        save_plain(path, kind.name, meta, arrays)
    except OSError as exc:  # a read-only home must not stop the run: the fit is in memory
        log.warning("could not store the fitted %s model in %s: %s", kind.name, path, exc)
    return model


def load_model(path: Path, kind: Kind) -> Any:
    """A stored model of ``kind``; nothing in the file is executed (:func:`.store.load_plain`)."""
    cls = kind.model_class()
    meta, arrays = load_plain(path, kind.name, cls.required)
    try:
        return cls.from_plain(meta, arrays)
    except PlainDataError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PlainDataError(f"{path}: not a usable {kind.name} file: {exc}; delete it to refit") from None


def _fold_of(issue_id: str, folds: int) -> int:
    return zlib.crc32(issue_id.encode("utf-8", "surrogatepass")) % folds


def training_issues(
    candidates: Iterable[Issue], run_issues: Sequence[Issue], *, from_file: bool = False
) -> list[Issue]:
    """What may be trained on: dev issues (from a training file: every issue not marked test), minus any
    issue the run treats as a test issue."""
    test_ids = {i.id for i in run_issues if i.split == "test"}
    keep = (lambda i: i.split != "test") if from_file else (lambda i: i.split == "dev")
    return [i for i in candidates if keep(i) and i.id not in test_ids]


def train_file(config: Config, spec: ModelSpec) -> list[Issue] | None:
    """The issues of the file ``options.train`` names (relative to the config file), or None."""
    name = spec.options.get("train")
    if not name:
        return None
    from ..issues import load_issues

    path = Path(str(name))
    if not path.is_absolute() and config.path is not None:
        path = config.path.parent / path
    return load_issues(path)


def fit_for(
    config: Config,
    spec: ModelSpec,
    mode: Mode,
    candidates: Sequence[Issue],
    run_issues: Sequence[Issue],
    *,
    from_file: bool = False,
) -> Fitted:
    """Fit (or load) what answers ``mode`` for the trained model ``spec`` and register it in :data:`FITTED`."""
    kind, params = params_of(spec)
    train = training_issues(candidates, run_issues, from_file=from_file)
    if kind.fitted and not train:
        where = f"the file options.train names ({spec.options.get('train')})" if from_file else "the dataset"
        raise ConfigError(
            f"model {spec.id!r}: no dev issue to train on for {mode.task_name} in {where}; give the dataset "
            'a dev split (`orchestrator issues split`) or name a training file: options = { train = "FILE" }'
        )
    home = config.home
    full = fit_or_load(home, kind, mode, params, train)
    asked = {i.id for i in run_issues}
    train_ids = frozenset(i.id for i in train)
    held_out: dict[str, Any] = {}
    overlap = sorted(asked & train_ids)
    if kind.fitted and overlap:
        folds = max(2, int(spec.options.get("folds", DEFAULT_FOLDS)))
        for f in range(folds):
            in_fold = {i for i in overlap if _fold_of(i, folds) == f}
            if not in_fold:
                continue
            rest = [i for i in train if _fold_of(i.id, folds) != f]
            model = _fit_or_none(home, kind, mode, params, rest)
            held_out |= dict.fromkeys(in_fold, model)
    fitted = Fitted(full, held_out, train_ids, len(train))
    FITTED[(spec.id, mode.task_name)] = fitted
    return fitted


class _Untrained:
    """Answers a held-out issue when nothing is left to fit its fold on (a dev split of one issue)."""

    def answer(self, issue: Issue) -> str:
        return "(no training data)"


def _fit_or_none(home: Path, kind: Kind, mode: Mode, params: dict[str, Any], issues: Sequence[Issue]) -> Any:
    if not issues:
        return _Untrained()
    try:
        return fit_or_load(home, kind, mode, params, issues)
    except ValueError:  # e.g. no issue of the fold's rest has gold files
        return _Untrained()


def train_for_run(
    config: Config,
    models: Sequence[str],
    modes: Sequence[Mode],
    run_issues: Sequence[Issue],
    training: Sequence[Issue] | Callable[[], Sequence[Issue]] | None = None,
    *,
    progress: bool = True,
) -> None:
    """Fit every trained model of a run for every task it answers, before the first call (with a progress
    bar when there is anything to fit). ``training`` may be a function: it is called once, when a model
    without its own training file needs it."""
    jobs = []
    for model in models:
        spec = config.model_spec(model)
        if spec.provider != PROVIDER:
            continue
        params_of(spec)
        for mode in modes:
            if cannot_answer(spec, mode) is None:
                jobs.append((spec, mode))
    if not jobs:
        return
    from tqdm.auto import tqdm

    with tqdm(
        total=len(jobs), desc="training baselines", unit="fit", disable=not progress, leave=False
    ) as bar:
        seen: set[tuple[str, str]] = set()
        for spec, mode in jobs:
            if (spec.id, mode.task_name) in seen:
                bar.update(1)
                continue
            seen.add((spec.id, mode.task_name))
            bar.set_postfix_str(f"{spec.id} · {mode.task_name}")
            from_file = train_file(config, spec)
            if from_file is None and callable(training):
                training = list(training())  # read once, and only when a model needs it
            candidates = (
                from_file if from_file is not None else (training if training is not None else run_issues)
            )
            fit_for(config, spec, mode, candidates, run_issues, from_file=from_file is not None)
            bar.update(1)


def fitted_for(config: Config, spec: ModelSpec, mode: Mode) -> Fitted:
    """What answers ``mode`` for ``spec``: fitted for the run, else fitted now from ``options.train``."""
    fitted = FITTED.get((spec.id, mode.task_name))
    if fitted is not None:
        return fitted
    kind, _ = params_of(spec)
    if not kind.fitted:
        return fit_for(config, spec, mode, [], [])
    from_file = train_file(config, spec)
    if from_file is None:
        raise ConfigError(
            f"model {spec.id!r} is not trained for {mode.task_name}: run it over a dataset with a dev split "
            f"(`orchestrator run --dataset FILE --models {spec.id} --tasks {mode.task_name}`), or name a "
            'training file in its options: options = { train = "FILE" }'
        )
    return fit_for(config, spec, mode, from_file, [], from_file=True)


__all__ = ["FITTED", "KINDS", "Fitted", "fit_for", "fitted_for", "train_for_run"]
