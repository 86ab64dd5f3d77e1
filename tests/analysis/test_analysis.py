"""Statistics: CI coverage and test error rates by simulation, exact parity with sklearn's F1, tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from sklearn.metrics import f1_score

from orchestrator.analysis import (
    bootstrap_means,
    classification_report_df,
    f1_per_repo,
    holm,
    macro_f1,
    paired_comparison,
    pareto_frontier,
    sign_flip_p,
    summary_table,
    tied_with_best,
)

# ----------------------------------------------------------------------------------------- simulation


def _stacked(scores: np.ndarray, *, clustered: bool = True) -> pd.DataFrame:
    """Datasets x issues x repeats scores as one results frame; each dataset is its own "model"."""
    n_sets, n_issues, reps = scores.shape
    issue = np.tile(np.repeat(np.arange(n_issues), reps), n_sets)
    if not clustered:  # every cell its own "issue": the naive, wrong analysis of repeats
        issue = np.tile(np.arange(n_issues * reps), n_sets)
    return pd.DataFrame(
        {
            "model": np.repeat([f"dataset{i:04d}" for i in range(n_sets)], n_issues * reps),
            "mode": "classify",
            "issue_id": [f"i{j}" for j in issue],
            "repeat": np.tile(np.arange(reps), n_sets * n_issues),
            "score": scores.ravel(),
        }
    )


def _coverage(summary: pd.DataFrame, truth: float) -> float:
    return float(((summary["ci_low"] <= truth) & (truth <= summary["ci_high"])).mean())


def test_ci_covers_true_mean_95_percent_bernoulli():
    """1000 datasets of Bernoulli(0.7) over 60 issues. Each (model, mode) group draws from its own
    generator seeded by its labels, so the stacked groups are independent simulated datasets."""
    rng = np.random.default_rng(20240601)
    scores = (rng.random((1000, 60, 1)) < 0.7).astype(float)
    df = _stacked(scores)
    summary = summary_table(df, n_boot=1000, seed=7)
    assert len(summary) == 1000 and (summary["n_issues"] == 60).all()
    coverage = _coverage(summary, 0.7)
    assert 0.93 <= coverage <= 0.97, coverage  # measured: 0.960
    # a dataset analysed alone gets exactly the interval it got in the stack
    alone = summary_table(df[df["model"] == "dataset0042"], n_boot=1000, seed=7)
    row = summary.loc[summary["model"] == "dataset0042"]
    assert alone[["ci_low", "ci_high"]].to_numpy() == pytest.approx(row[["ci_low", "ci_high"]].to_numpy())


def test_clustered_ci_covers_with_correlated_repeats_and_naive_does_not():
    """Issue difficulty p_i ~ Beta(2.1, 0.9) (mean 0.7, intra-issue correlation 0.25), 3 repeats per issue."""
    rng = np.random.default_rng(20240602)
    p_issue = rng.beta(2.1, 0.9, size=(1000, 60, 1))
    scores = (rng.random((1000, 60, 3)) < p_issue).astype(float)
    clustered = summary_table(_stacked(scores), n_boot=1000, seed=8)
    assert (clustered["n_cells"] == 180).all() and (clustered["n_issues"] == 60).all()
    coverage = _coverage(clustered, 0.7)
    assert 0.93 <= coverage <= 0.97, coverage  # measured: 0.947
    naive = _coverage(summary_table(_stacked(scores, clustered=False), n_boot=1000, seed=8), 0.7)
    assert naive < 0.92, naive  # treating repeats as independent issues undercovers (measured: 0.903)


def _pair_frame(a: np.ndarray, b: np.ndarray) -> pd.DataFrame:
    n = a.size
    issues = [f"i{j}" for j in range(n)]
    return pd.DataFrame(
        {"model": ["A"] * n + ["B"] * n, "mode": "m", "issue_id": issues + issues, "score": np.r_[a, b]}
    )


def _false_positive_rate(
    n_sets: int, n_issues: int, *, binary: bool, method: str, seed: int
) -> tuple[float, set]:
    """Two models with the same score distribution, paired through a shared issue effect."""
    rng = np.random.default_rng(seed)
    rejected, tests = 0, set()
    for k in range(n_sets):
        effect = rng.normal(0.85, 1.0, n_issues)
        if binary:
            p = 1 / (1 + np.exp(-effect))
            a, b = (rng.random(n_issues) < p) * 1.0, (rng.random(n_issues) < p) * 1.0
        else:
            a = 1 / (1 + np.exp(-(effect + rng.normal(0, 0.5, n_issues))))
            b = 1 / (1 + np.exp(-(effect + rng.normal(0, 0.5, n_issues))))
        row = paired_comparison(_pair_frame(a, b), "m", n_boot=1000, seed=k, method=method).iloc[0]
        rejected += bool(row["significant"])
        tests.add(row["test"])
    return rejected / n_sets, tests


@pytest.mark.parametrize(
    ("method", "test_name", "seed"),
    [("permutation", "paired_permutation", 3), ("bootstrap", "paired_bootstrap", 4)],
)
def test_paired_test_false_positive_rate_continuous(method, test_name, seed):
    rate, tests = _false_positive_rate(800, 60, binary=False, method=method, seed=seed)
    assert tests == {test_name}
    assert 0.03 <= rate <= 0.07, rate  # measured: permutation 0.039, bootstrap 0.059


def test_mcnemar_false_positive_rate_binary():
    """Exact McNemar is conservative by construction: its size here is 4.1 % with 500 issues (~185
    discordant pairs) but only 2.9 % with 60 issues (~22 discordant pairs), by 20000-run simulation."""
    rate, tests = _false_positive_rate(1000, 500, binary=True, method="permutation", seed=5)
    assert tests == {"mcnemar"}
    assert 0.03 <= rate <= 0.07, rate  # measured: 0.038 (true size here ~0.041)


def test_paired_tests_detect_a_real_difference():
    rng = np.random.default_rng(11)
    effect = rng.normal(0, 1, 80)
    a = 1 / (1 + np.exp(-(effect + 0.8 + rng.normal(0, 0.5, 80))))
    b = 1 / (1 + np.exp(-(effect + rng.normal(0, 0.5, 80))))
    row = paired_comparison(_pair_frame(a, b), "m").iloc[0]
    assert row["significant"] and row["p_value"] < 0.001 and 0 < row["ci_low"] < row["diff"] < row["ci_high"]


# ------------------------------------------------------------------------------------------ bootstrap


def _index_bootstrap(x: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)


def test_multinomial_bootstrap_matches_index_bootstrap():
    x = np.r_[np.ones(42), np.zeros(18), np.full(20, 1 / 3)]
    fast = bootstrap_means(x, 20000, np.random.default_rng(1))
    slow = _index_bootstrap(x, 20000, 2)
    assert np.quantile(fast, [0.025, 0.5, 0.975]) == pytest.approx(
        np.quantile(slow, [0.025, 0.5, 0.975]), abs=0.01
    )
    assert fast.std() == pytest.approx(x.std() / np.sqrt(x.size), rel=0.03)


def test_gridded_bootstrap_of_continuous_scores_keeps_mean_and_spread():
    rng = np.random.default_rng(3)
    x = rng.beta(5, 2, 20000)  # 20000 distinct values: the grid path
    boot = bootstrap_means(x, 1000, np.random.default_rng(4))
    assert boot.mean() == pytest.approx(x.mean(), abs=2e-4)
    assert boot.std() == pytest.approx(x.std() / np.sqrt(x.size), rel=0.05)
    slow = _index_bootstrap(x, 1000, 5)
    assert np.quantile(boot, [0.025, 0.975]) == pytest.approx(np.quantile(slow, [0.025, 0.975]), abs=4e-4)


def test_sign_flip_exact_enumeration_and_degenerate_cases():
    rng = np.random.default_rng(0)
    assert sign_flip_p(np.full(5, 0.5), 2000, rng) == pytest.approx(2 / 32)  # all 32 sign vectors
    assert sign_flip_p(np.zeros(10), 2000, rng) == 1.0
    assert sign_flip_p(np.array([0.2, -0.2, 0.0]), 2000, rng) == 1.0


# ------------------------------------------------------------------------------------ summary_table


def _cells() -> pd.DataFrame:
    """Two models, two issues, two repeats: small enough to check by hand."""
    rows = [
        # model, issue, repeat, score, error, cost, latency, cached
        ("m1", "i1", 0, 1.0, None, 0.010, 1.0, False),
        ("m1", "i1", 1, 0.0, None, 0.030, 3.0, False),
        ("m1", "i2", 0, 1.0, None, 0.020, 2.0, False),
        ("m1", "i2", 1, np.nan, "timeout", 0.000, 30.0, False),
        ("m2", "i1", 0, 1.0, None, np.nan, 0.5, False),
        ("m2", "i1", 1, 1.0, "", np.nan, 0.01, True),
        ("m2", "i2", 0, 0.0, None, np.nan, 0.7, False),
        ("m2", "i2", 1, 0.0, None, np.nan, 0.9, False),
    ]
    df = pd.DataFrame(
        rows,
        columns=["model", "issue_id", "repeat", "score", "error_type", "cost_usd", "latency_s", "from_cache"],
    )
    return df.assign(
        run_id="r",
        repo="acme/x",
        split="test",
        mode="fix",
        input_uncached=100,
        cache_read=20,
        cache_write=0,
        output=30,
        reasoning=10,
    )


def test_summary_table_values_by_hand():
    s = summary_table(_cells(), n_boot=500).set_index("model")
    m1, m2 = s.loc["m1"], s.loc["m2"]
    assert (m1["n_issues"], m1["n_cells"], m1["n_scored_issues"]) == (2, 4, 2)
    assert m1["mean"] == pytest.approx((0.5 + 1.0) / 2)  # repeats averaged within the issue first
    assert m1["ci_low"] <= m1["mean"] <= m1["ci_high"]
    assert m1["cost_per_issue"] == pytest.approx(((0.01 + 0.03) / 2 + (0.02 + 0.0) / 2) / 2)
    assert m1["cost_per_correct"] == pytest.approx(0.06 / 2.0)
    assert m1["spent_usd"] == pytest.approx(0.06) and m1["cost_known"] == 1.0
    assert m1["error_rate"] == 0.25
    assert m1["latency_p50"] == pytest.approx(2.0) and m1["latency_p95"] == pytest.approx(
        2.9
    )  # errors left out
    assert m1["tokens_in"] == 120 and m1["tokens_out"] == 40
    assert m2["mean"] == 0.5 and m2["error_rate"] == 0.0  # "" is no error
    assert np.isnan(m2["cost_per_issue"]) and np.isnan(m2["cost_per_correct"]) and m2["cost_known"] == 0.0
    assert m2["cache_hit_rate"] == 0.25
    assert m2["latency_p50"] == pytest.approx(0.7)  # the cached 0.01 s call is left out


def test_summary_table_options_and_determinism():
    df = _cells()
    as_zero = summary_table(df, n_boot=200, errors_as_zero=True).set_index("model")
    assert as_zero.loc["m1", "mean"] == pytest.approx((0.5 + 0.5) / 2)
    a, b = summary_table(df, n_boot=300, seed=1), summary_table(df, n_boot=300, seed=1)
    pd.testing.assert_frame_equal(a, b)
    by_run = summary_table(df, n_boot=100, by=("model", "mode", "run_id"))
    assert list(by_run.columns[:3]) == ["model", "mode", "run_id"] and len(by_run) == 2


def test_summary_table_list_price_for_cache_hits_and_zero_scores():
    df = _cells().assign(cost_usd=[0.0] * 8, cost_saved_usd=[np.nan] * 8, score=[0.0] * 8)
    df.loc[df["from_cache"], "cost_saved_usd"] = 0.5
    s = summary_table(df, n_boot=100).set_index("model")
    assert s.loc["m2", "spent_usd"] == 0.0  # what was spent: nothing
    assert s.loc["m2", "cost_per_issue"] == pytest.approx((0.25 + 0.0) / 2)  # the hit counts its list cost
    assert np.isnan(s.loc["m1", "cost_per_correct"])  # no correct answer: NaN, not inf or 0


def test_summary_table_without_optional_columns():
    df = pd.DataFrame(
        {"model": ["a", "a", "b"], "mode": "x", "issue_id": ["1", "2", "1"], "score": [1.0, 0.0, 1.0]}
    )
    s = summary_table(df, n_boot=100)
    assert list(s["model"]) == ["a", "b"] and (s["error_rate"] == 0).all()
    assert s["cost_per_issue"].isna().all() and s["tokens_in"].isna().all() and s["latency_p50"].isna().all()
    assert s.loc[1, "ci_low"] == s.loc[1, "ci_high"] == 1.0  # one issue: a degenerate interval
    assert summary_table(df.iloc[:0]).empty


# -------------------------------------------------------------------------------------- paired tests


def test_paired_comparison_columns_mcnemar_and_inner_join():
    rng = np.random.default_rng(9)
    a = (rng.random(50) < 0.8) * 1.0
    b = (rng.random(50) < 0.5) * 1.0
    df = _pair_frame(a, b)
    df = pd.concat([df, pd.DataFrame({"model": ["A"], "mode": "m", "issue_id": ["extra"], "score": [1.0]})])
    out = paired_comparison(df, "m")
    assert list(out.columns) == [
        "model_a", "model_b", "n", "mean_a", "mean_b", "diff", "ci_low", "ci_high",
        "p_value", "p_holm", "test", "significant",
    ]  # fmt: skip
    row = out.iloc[0]
    assert (row["model_a"], row["model_b"], row["n"], row["test"]) == ("A", "B", 50, "mcnemar")
    only_a, only_b = int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))
    assert row["p_value"] == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    assert row["diff"] == pytest.approx(a.mean() - b.mean()) and row["p_holm"] == row["p_value"]


def test_paired_comparison_averages_repeats_and_uses_reference():
    rng = np.random.default_rng(10)
    rows = []
    for model, shift in (("good", 0.3), ("same", 0.29), ("bad", -0.3)):
        for issue in range(40):
            for rep in range(3):
                rows.append((model, f"i{issue}", rep, float(np.clip(0.5 + shift + rng.normal(0, 0.2), 0, 1))))
    df = pd.DataFrame(rows, columns=["model", "issue_id", "repeat", "score"]).assign(mode="explain")
    full = paired_comparison(df, "explain", n_boot=500)
    assert len(full) == 3 and set(full["test"]) == {"paired_permutation"} and (full["n"] == 40).all()
    assert full["p_holm"].to_numpy() == pytest.approx(holm(full["p_value"]))
    ref = paired_comparison(df, "explain", n_boot=500, reference="good")
    assert list(zip(ref["model_a"], ref["model_b"], strict=True)) == [("good", "bad"), ("good", "same")]
    assert tied_with_best(df, "explain", n_boot=500) == ["good", "same"]
    with pytest.raises(ValueError, match="reference model"):
        paired_comparison(df, "explain", reference="nobody")


def test_holm_by_hand_and_against_definition():
    assert holm([0.01, 0.04, 0.03, np.nan]) == pytest.approx([0.03, 0.06, 0.06, np.nan], nan_ok=True)
    rng = np.random.default_rng(12)
    p = rng.random(7) ** 3
    order = np.argsort(p)
    expected = np.empty(7)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (7 - rank) * p[i]))
        expected[i] = running
    assert holm(p) == pytest.approx(expected)


# ------------------------------------------------------------------------------------------- Pareto


def test_pareto_frontier():
    pts = pd.DataFrame(
        {
            "model": ["free", "cheap", "dominated", "best", "tie-a", "tie-b", "unknown"],
            "cost_per_issue": [0.0, 0.001, 0.002, 0.01, 0.005, 0.005, np.nan],
            "mean": [0.5, 0.6, 0.55, 0.9, 0.7, 0.7, 0.99],
        }
    )
    front = pareto_frontier(pts)
    assert list(front["model"]) == ["free", "cheap", "tie-a", "tie-b", "best"]
    slow_first = pareto_frontier(pts.assign(speed=[1, 2, 3, 4, 5, 5, 6]), x="speed", lower_x_better=False)
    assert list(slow_first["model"]) == ["unknown"]  # highest speed and highest mean dominates all


# --------------------------------------------------------------------------------------- F1 vs sklearn


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
@pytest.mark.parametrize(
    ("y_true", "y_pred", "labels"),
    [
        (["bug", "bug", "feature", "question"], ["bug", "feature", "feature", "bug"], None),
        (["bug", "docs", "docs", "feature"], ["bug", "bug", "bug", "feature"], None),  # docs never predicted
        (["bug", "bug", "feature"], ["bug", "question", "feature"], None),  # question never true
        (["bug", "bug"], ["bug", "bug"], None),
        (["bug", "feature"], ["feature", "bug"], None),
        (["bug", "feature"], ["bug", "feature"], ["bug", "docs", "feature", "question"]),  # no true, no pred
        (["bug", "feature", "question"], ["bug", "docs", "question"], ["bug", "feature"]),  # subset of labels
    ],
)
def test_macro_f1_equals_sklearn(y_true, y_pred, labels):
    expected = f1_score(y_true, y_pred, labels=labels, average="macro")
    assert macro_f1(y_true, y_pred, labels) == pytest.approx(expected, abs=1e-9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_macro_f1_equals_sklearn_on_random_fixtures():
    rng = np.random.default_rng(13)
    classes = np.array(["bug", "feature", "question", "docs"])
    for _ in range(200):
        n = int(rng.integers(1, 40))
        y_true = classes[rng.integers(0, 3, n)]  # docs never true
        y_pred = classes[rng.integers(0, 4, n)]
        assert macro_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-9)


def _classify_frame() -> pd.DataFrame:
    rng = np.random.default_rng(14)
    rows = []
    for model in ("m1", "m2"):
        for repo, n in (("acme/a", 30), ("acme/b", 20), ("acme/c", 12)):
            for i in range(n):
                gold = ["bug", "feature", "question"][int(rng.integers(0, 3 if repo != "acme/c" else 2))]
                pred = (
                    gold
                    if rng.random() < 0.7
                    else ["bug", "feature", "question", "docs"][int(rng.integers(0, 4))]
                )
                pred = None if rng.random() < 0.05 else pred  # parse failures
                rows.append((model, repo, f"{repo}#{i}", "classify", gold, pred, None, float(pred == gold)))
    rows.append(("m1", "acme/a", "acme/a#99", "classify", "bug", None, "timeout", np.nan))  # failed cell
    rows.append(("m1", "acme/a", "acme/a#98", "explain", "bug", "bug", None, 0.3))  # other mode
    return pd.DataFrame(
        rows, columns=["model", "repo", "issue_id", "mode", "gold_type", "pred_type", "error_type", "score"]
    )


def _sklearn_repo_f1(rows: pd.DataFrame) -> float:
    rows = rows[(rows["mode"] == "classify") & rows["error_type"].isna()]
    scores = []
    for _, r in rows.groupby("repo"):
        pred = r["pred_type"].fillna("<invalid>")
        labels = sorted((set(r["gold_type"]) | set(pred)) - {"<invalid>"})
        scores.append(f1_score(r["gold_type"], pred, labels=labels, average="macro"))
    return float(np.mean(scores))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_f1_per_repo_is_mean_of_sklearn_per_repo_macro_f1():
    df = _classify_frame()
    m1 = df[df["model"] == "m1"]
    assert f1_per_repo(m1) == pytest.approx(_sklearn_repo_f1(m1), abs=1e-9)
    with pytest.raises(ValueError, match="one model"):
        f1_per_repo(df)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_classification_report_per_model():
    df = _classify_frame()
    report = classification_report_df(df).set_index("model")
    assert list(report.index) == ["m1", "m2"]
    for model in ("m1", "m2"):
        rows = df[(df["model"] == model) & (df["mode"] == "classify") & df["error_type"].isna()]
        pred = rows["pred_type"].fillna("<invalid>")
        assert report.loc[model, "n"] == len(rows)
        assert report.loc[model, "accuracy"] == pytest.approx((pred == rows["gold_type"]).mean())
        labels = sorted((set(rows["gold_type"]) | set(pred)) - {"<invalid>"})
        assert report.loc[model, "macro_f1"] == pytest.approx(
            f1_score(rows["gold_type"], pred, labels=labels, average="macro"), abs=1e-9
        )
        assert report.loc[model, "f1_per_repo"] == pytest.approx(_sklearn_repo_f1(rows), abs=1e-9)
        assert report.loc[model, "invalid_rate"] == pytest.approx((pred == "<invalid>").mean())
    assert {"f1:acme/a", "f1:acme/b", "f1:acme/c"} <= set(report.columns)


def test_summary_table_ttft_and_tokens_per_second_over_streamed_calls_only():
    cells = pd.DataFrame(
        {
            "model": ["s"] * 5 + ["w"] * 2,
            "mode": ["fix"] * 7,
            "issue_id": ["a", "b", "c", "d", "e", "a", "b"],
            "repeat": [0] * 7,
            "score": [1.0] * 7,
            "error_type": ["", "", "", "", "timeout", "", ""],
            "latency_s": [1.0, 2.0, 3.0, 4.0, 9.0, 1.0, 1.0],
            "ttft_s": [0.1, 0.2, 0.3, 0.9, 5.0, np.nan, np.nan],  # the failed cell's TTFT is left out
            "output_tps": [10.0, 20.0, 30.0, 40.0, 1.0, np.nan, np.nan],
            "from_cache": [False, False, False, False, False, False, False],
        }
    )
    s = summary_table(cells, n_boot=100).set_index("model")
    assert s.loc["s", "ttft_p50"] == pytest.approx(0.25)
    assert s.loc["s", "ttft_p95"] == pytest.approx(np.quantile([0.1, 0.2, 0.3, 0.9], 0.95))
    assert s.loc["s", "output_tps_p50"] == pytest.approx(25.0)
    assert np.isnan(s.loc["w", "ttft_p50"]) and np.isnan(s.loc["w", "output_tps_p50"])  # whole-body calls
    old = summary_table(cells.drop(columns=["ttft_s", "output_tps"]), n_boot=100)  # a run from before
    assert old["ttft_p50"].isna().all()
