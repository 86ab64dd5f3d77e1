"""Training, prediction and loading of the trained label baseline (``trained/tfidf-logreg``).

On a synthetic NLBSE-shaped set (tests/helpers/nlbse.py), train rows as dev and test rows as test, in
interleaved rounds: the scikit-learn import (once, a fresh process, numpy and scipy included); a fresh
``LabelModel.fit`` on the dev issues (scikit-learn already imported); ``model.predict(issue)`` per test
issue (the mean over all), beside a scikit-learn Pipeline with the same settings fitted on the same data
asked ``pipe.predict([text])`` one issue at a time, and their ratio round by round; the share of equal
predictions (expected 1.0) and our macro-F1 per repository, averaged; ``load_model`` of a model stored
with ``save_plain``, and the file's size (MB = 10^6 bytes).

Targets: a fit of 1,500 issues < 5 s on 2 cores; a prediction < 1 ms per issue.

    python bench/bench_trained.py --train 1500 --test 1500 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _report import Report, Target, ratios  # noqa: E402
from helpers.nlbse import issues as synthetic_issues  # noqa: E402
from helpers.nlbse import label_mode  # noqa: E402

from orchestrator.trained import KINDS  # noqa: E402
from orchestrator.trained.fitting import load_model  # noqa: E402
from orchestrator.trained.labels import LabelModel, logreg_params  # noqa: E402
from orchestrator.trained.store import save_plain  # noqa: E402
from orchestrator.trained.text import issue_text, vectorizer_params  # noqa: E402
from orchestrator.types import Issue  # noqa: E402

TARGET_FIT_S = Target("<", 5.0, "s")  # 1,500 dev issues, 2 cores
TARGET_PREDICT_MS = Target("<", 1.0, "ms")  # per issue
IMPORT_SKLEARN = (
    "import time; t = time.perf_counter(); "
    "import sklearn.feature_extraction.text, sklearn.linear_model; print(time.perf_counter() - t)"
)


def split_issues(n_train: int, n_test: int, seed: int, cue_rate: float) -> tuple[list[Issue], list[Issue]]:
    out = synthetic_issues(n_train, n_test, seed=seed, cue_rate=cue_rate)
    return [i for i in out if i.split == "dev"], [i for i in out if i.split == "test"]


def macro_f1_by_repo(test: list[Issue], predicted: list[str]) -> float:
    from sklearn.metrics import f1_score

    by_repo: dict[str, tuple[list[str], list[str]]] = {}
    for issue, p in zip(test, predicted, strict=True):
        gold, pred = by_repo.setdefault(issue.repo, ([], []))
        gold.append(str(issue.gold.value_of("label")))
        pred.append(p)
    return statistics.mean(f1_score(g, p, average="macro") for g, p in by_repo.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--cue-rate", type=float, default=0.25)
    args = parser.parse_args()

    done = subprocess.run([sys.executable, "-c", IMPORT_SKLEARN], capture_output=True, text=True, check=True)
    imported = float(done.stdout)
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    kind, mode = KINDS["tfidf-logreg"], label_mode()
    params = kind.defaults
    dev, test = split_issues(args.train, args.test, args.seed, args.cue_rate)
    dev_texts, dev_labels = [issue_text(i) for i in dev], [str(i.gold.value_of("label")) for i in dev]
    test_texts = [issue_text(i) for i in test]

    fit_s: list[float] = []
    ours_ms: list[float] = []
    pipe_ms: list[float] = []
    load_ms: list[float] = []
    agreement: list[float] = []
    f1: list[float] = []
    size_mb = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tfidf-logreg.npz"
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            model = LabelModel.fit(dev, mode, params)
            fit_s.append(time.perf_counter() - t0)
            pipe = make_pipeline(
                TfidfVectorizer(**vectorizer_params(params["ngram_max"], params["min_df"])),
                LogisticRegression(**logreg_params(params)),
            ).fit(dev_texts, dev_labels)

            t0 = time.perf_counter()
            ours = [model.predict(i)["label"] for i in test]
            ours_ms.append((time.perf_counter() - t0) * 1000 / len(test))
            t0 = time.perf_counter()
            theirs = [str(pipe.predict([t])[0]) for t in test_texts]
            pipe_ms.append((time.perf_counter() - t0) * 1000 / len(test))
            agreement.append(statistics.mean(a == b for a, b in zip(ours, theirs, strict=True)))
            f1.append(macro_f1_by_repo(test, ours))

            meta, arrays = model.to_plain()
            save_plain(path, kind.name, meta, arrays)
            size_mb = path.stat().st_size / 1e6
            t0 = time.perf_counter()
            load_model(path, kind)
            load_ms.append((time.perf_counter() - t0) * 1000)

    report = Report(
        f"python bench/bench_trained.py --train {args.train} --test {args.test} --rounds {args.rounds}"
    )
    report.section(
        f"tfidf-logreg, {len(dev)} dev and {len(test)} test issues, {len(model.tfidf.terms)} terms"
    )
    report.add("scikit-learn import, fresh process", imported, unit="s", basis="one run")
    target_fit = TARGET_FIT_S if args.train == 1500 else None
    report.add("LabelModel.fit", fit_s, unit="s", target=target_fit)
    report.add("model.predict, per issue", ours_ms, unit="ms", target=TARGET_PREDICT_MS)
    report.add("sklearn pipe.predict([text]), per issue", pipe_ms, unit="ms")
    report.add("ours / sklearn pipeline, per issue", ratios(ours_ms, pipe_ms))
    report.add("agreement with the sklearn pipeline", agreement)
    report.add("macro-F1 on test, per repo averaged", f1)
    report.add("load_model of the stored model", load_ms, unit="ms")
    report.add("stored model size", size_mb, unit="MB", digits=2, basis="one file")
    report.print()


if __name__ == "__main__":
    main()
