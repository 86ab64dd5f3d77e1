"""Trained baselines: scikit-learn parity, no test issue in any fit, plain-data storage that runs no code,
end to end through the CLI on an NLBSE-shaped file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.nlbse import IMPORT_MAP, TASK, label_mode, rows, write_csv
from helpers.nlbse import issues as nlbse_issues

from orchestrator.cli import main
from orchestrator.trained import KINDS
from orchestrator.trained.labels import LabelModel, logreg_params
from orchestrator.trained.store import PlainDataError, load_plain, save_plain
from orchestrator.trained.text import issue_text, vectorizer_params
from orchestrator.types import Gold, Issue

PLANTED = "zqxplantedtoken"


def synthetic_issues(n_train: int, n_test: int, seed: int = 3) -> list[Issue]:
    return nlbse_issues(n_train, n_test, seed=seed, cue_rate=0.25)


# ---------------------------------------------------------------------------------------- sklearn parity


def test_the_label_baseline_predicts_exactly_what_a_sklearn_pipeline_predicts(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    issues = synthetic_issues(300, 300)
    dev = [i for i in issues if i.split == "dev"]
    test = [i for i in issues if i.split == "test"]
    params = KINDS["tfidf-logreg"].defaults
    ours = LabelModel.fit(dev, label_mode(), params)
    reference = make_pipeline(
        TfidfVectorizer(**vectorizer_params(params["ngram_max"], params["min_df"])),
        LogisticRegression(**logreg_params(params)),
    ).fit([issue_text(i) for i in dev], [i.gold.value_of("label") for i in dev])
    expected = list(reference.predict([issue_text(i) for i in test]))
    got = [ours.predict(i)["label"] for i in test]
    assert got == expected
    assert 0.4 < np.mean([g == i.gold.value_of("label") for g, i in zip(got, test, strict=True)]) < 1.0
    # the same vectors as scikit-learn's transform, not just the same argmax
    sk = reference[0].transform([issue_text(i) for i in test[:20]]).toarray()
    mine = ours.tfidf.matrix([issue_text(i) for i in test[:20]]).toarray()
    np.testing.assert_allclose(mine, sk, rtol=1e-12, atol=1e-15)
    # and the stored copy predicts the same
    meta, arrays = ours.to_plain()
    save_plain(tmp_path / "m.npz", "tfidf-logreg", meta, arrays)
    meta, arrays = load_plain(tmp_path / "m.npz", "tfidf-logreg", LabelModel.required(meta))
    loaded = LabelModel.from_plain(meta, arrays)
    assert [loaded.predict(i)["label"] for i in test] == expected


def test_two_labels_use_the_binary_decision_like_sklearn():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    issues = [i for i in synthetic_issues(200, 100) if i.gold.value_of("label") != "question"]
    dev = [i for i in issues if i.split == "dev"]
    test = [i for i in issues if i.split == "test"]
    params = KINDS["tfidf-logreg"].defaults
    ours = LabelModel.fit(dev, label_mode(("bug", "feature")), params)
    assert ours.heads[0].coef.shape[0] == 1
    reference = make_pipeline(
        TfidfVectorizer(**vectorizer_params()), LogisticRegression(**logreg_params(params))
    ).fit([issue_text(i) for i in dev], [i.gold.value_of("label") for i in dev])
    assert [ours.predict(i)["label"] for i in test] == list(reference.predict([issue_text(i) for i in test]))


def test_the_analyzer_matches_sklearn_on_hostile_text():
    from sklearn.feature_extraction.text import TfidfVectorizer

    from orchestrator.trained.text import analyze

    texts = [
        "Ünïcode ÇASE straße ΣΊΣΥΦΟΣ",
        "a b c d",
        "x",
        "",
        "café_crème 12 345 𝔘𝔫𝔦",
        "it's a-b c\u00a0d\tE\nF",
    ]
    build = TfidfVectorizer(**vectorizer_params()).build_analyzer()
    for text in texts:
        assert analyze(text) == build(text), text


# ------------------------------------------------------------------------------------------ no leakage


def _stored_vocabularies(home: Path) -> list[set[str]]:
    from orchestrator.trained.store import decode_lines

    out = []
    for path in sorted((home / "trained").glob("*.npz")):
        with np.load(path, allow_pickle=False) as npz:
            out.append(set(decode_lines(npz["terms"])))
    return out


def nlbse_project(tmp_path: Path, n_train: int = 60, n_test: int = 40, plant_in: str | None = "test") -> Path:
    """An NLBSE-shaped CSV imported through the CLI, with a token planted in every issue of one split."""
    records = rows(n_train, n_test, seed=5, cue_rate=0.9)
    for r in records:
        if plant_in and r["split"] == ("train" if plant_in == "dev" else plant_in):
            r["body"] += f" {PLANTED}"
    write_csv(tmp_path / "nlbse.csv", records)
    assert (
        main(
            [
                "issues",
                "import",
                str(tmp_path / "nlbse.csv"),
                "--map",
                IMPORT_MAP,
                "-o",
                str(tmp_path / "nlbse.jsonl"),
            ]
        )
        == 0
    )
    (tmp_path / "tasks").mkdir(exist_ok=True)
    (tmp_path / "tasks" / "nlbse.toml").write_text(TASK, encoding="utf-8")
    cfg = tmp_path / "orchestrator.toml"
    cfg.write_text(
        '[defaults]\nmodel = "trained/tfidf-logreg"\n\n[models."trained/tfidf-logreg"]\n'
        'provider = "trained"\nmodel = "tfidf-logreg"\n\n[models."baseline/rules"]\nprovider = "baseline"\n',
        encoding="utf-8",
    )
    return cfg


def test_an_nlbse_file_runs_end_to_end_and_no_test_issue_reaches_a_fit(tmp_path, capsys, isolated_home):
    from orchestrator.runs.store import results_df

    cfg = nlbse_project(tmp_path, plant_in="test")
    base = ["--config", str(cfg), "run", "--dataset", str(tmp_path / "nlbse.jsonl"), "--tasks", "nlbse"]
    assert main([*base, "--split", "test", "--models", "trained/tfidf-logreg", "--run-id", "t"]) == 0
    out = capsys.readouterr()
    df = results_df("t", home=isolated_home)
    assert len(df) == 40 and set(df["split"]) == {"test"}
    assert (df["error_type"].fillna("") == "").all()
    assert df["score"].mean() > 0.5  # three labels: chance is 1/3
    assert (df["cost_usd"] == 0).all() and (df["latency_s"] > 0).all()
    assert "training baselines" in out.err
    vocabularies = _stored_vocabularies(isolated_home)
    assert len(vocabularies) == 1 and PLANTED not in vocabularies[0]
    # both splits in one run: the dev issues are answered by fold models; still no test token anywhere
    assert main([*base, "--models", "trained/tfidf-logreg", "--run-id", "both"]) == 0
    vocabularies = _stored_vocabularies(isolated_home)
    assert len(vocabularies) == 6  # the full fit (reused) and five folds
    assert all(PLANTED not in v for v in vocabularies)


def test_the_planted_token_is_seen_when_it_is_in_the_dev_split(tmp_path, isolated_home):
    """The control of the leakage test: the same check finds the token when training may see it."""
    cfg = nlbse_project(tmp_path, plant_in="dev")
    args = ["--config", str(cfg), "run", "--dataset", str(tmp_path / "nlbse.jsonl"), "--tasks", "nlbse"]
    assert main([*args, "--split", "test", "--models", "trained/tfidf-logreg", "--run-id", "t"]) == 0
    assert PLANTED in _stored_vocabularies(isolated_home)[0]


def test_a_dev_issue_is_answered_by_a_model_that_never_saw_it(tmp_path, isolated_home):
    from orchestrator.config import load_config
    from orchestrator.trained.fitting import fit_for

    cfg = load_config(nlbse_project(tmp_path, plant_in=None))
    issues = synthetic_issues(40, 10)
    issues[0].body += " onlyinthisissue"
    mode = label_mode()
    fitted = fit_for(cfg, cfg.model_spec("trained/tfidf-logreg"), mode, issues, issues)
    assert "onlyinthisissue" in fitted.full.vocabulary()
    held = fitted.held_out[issues[0].id]
    assert "onlyinthisissue" not in held.vocabulary()
    assert set(fitted.held_out) == {i.id for i in issues if i.split == "dev"}
    assert fitted.answer(issues[0]) == held.answer(issues[0])
    assert not (fitted.train_ids & {i.id for i in issues if i.split == "test"})


def test_a_refit_happens_only_when_the_training_data_changes(tmp_path, isolated_home, monkeypatch):
    from orchestrator.config import load_config
    from orchestrator.trained.fitting import fit_for

    cfg = load_config(nlbse_project(tmp_path, plant_in=None))
    spec = cfg.model_spec("trained/tfidf-logreg")
    issues = [i for i in synthetic_issues(30, 0)]
    first = fit_for(cfg, spec, label_mode(), issues, [])
    calls = []
    real_fit = LabelModel.fit.__func__
    monkeypatch.setattr(LabelModel, "fit", classmethod(lambda cls, *a: calls.append(1) or real_fit(cls, *a)))
    again = fit_for(cfg, spec, label_mode(), issues, [])
    assert calls == [] and again.full.vocabulary() == first.full.vocabulary()
    issues[3].gold = Gold.model_validate(
        {"label": "question" if issues[3].gold.value_of("label") != "question" else "bug"}
    )
    fit_for(cfg, spec, label_mode(), issues, [])
    assert calls == [1]
    assert len(list((isolated_home / "trained").glob("*.npz"))) == 2


# ------------------------------------------------------------------------------------------ plain data


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_tampered_stored_model_is_refused_without_running_its_payload(tmp_path, isolated_home, capsys):
    cfg = nlbse_project(tmp_path, plant_in=None)
    args = ["--config", str(cfg), "run", "--dataset", str(tmp_path / "nlbse.jsonl"), "--tasks", "nlbse"]
    assert main([*args, "--split", "test", "--models", "trained/tfidf-logreg", "--run-id", "t"]) == 0
    (stored,) = (isolated_home / "trained").glob("*.npz")
    marker = tmp_path / "payload-ran"
    boom = _Boom()
    boom.marker = marker
    payload = np.empty(1, dtype=object)
    payload[0] = boom
    with np.load(stored, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["idf"] = payload
    np.savez(stored, **arrays)  # numpy pickles the object array
    assert b"system" in stored.read_bytes() or b"posix" in stored.read_bytes()
    capsys.readouterr()
    code = main([*args, "--split", "test", "--models", "trained/tfidf-logreg", "--run-id", "t2"])
    err = capsys.readouterr().err
    assert code != 0 and not marker.exists()
    assert str(stored) in err and "pickled" in err and "Traceback" not in err
    stored.write_bytes(b"not a zip at all")
    assert main([*args, "--split", "test", "--models", "trained/tfidf-logreg", "--run-id", "t3"]) != 0
    assert "not a usable tfidf-logreg file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a: a.pop("coef_0"), "array 'coef_0' is missing"),
        (lambda a: a.__setitem__("coef_0", a["coef_0"][:, :5]), "coefficients of shape"),
        (lambda a: a.__setitem__("idf", np.full_like(a["idf"], np.nan)), "NaN"),
        (lambda a: a.__setitem__("header", np.frombuffer(b'{"format": "x"}', dtype=np.uint8)), "format"),
    ],
)
def test_a_stored_model_with_wrong_arrays_is_a_clear_error(tmp_path, edit, message):
    from orchestrator.trained.fitting import load_model

    model = LabelModel.fit(synthetic_issues(30, 0), label_mode(), KINDS["tfidf-logreg"].defaults)
    meta, arrays = model.to_plain()
    path = save_plain(tmp_path / "m.npz", "tfidf-logreg", meta, arrays)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    edit(arrays)
    np.savez(path, **arrays)
    with pytest.raises(PlainDataError, match=message):
        load_model(path, KINDS["tfidf-logreg"])


# ------------------------------------------------------------------------------- files, lead-k, the grid


def _fix_issues() -> list[Issue]:
    def issue(n, title, body, files, split):
        return Issue(
            id=f"a/b#{n}", repo="a/b", number=n, title=title, body=body, split=split, gold=Gold(files=files)
        )

    return [
        issue(
            1,
            "Parser crashes on tabs",
            "The tokenizer fails on tab characters in the lexer",
            ["src/lexer.py"],
            "dev",
        ),
        issue(
            2, "Login page slow", "The auth session cookie handling is slow", ["src/auth/session.py"], "dev"
        ),
        issue(3, "Docs typo", "Typo in the install guide", ["docs/install.md"], "dev"),
        issue(
            4,
            "Lexer breaks on tabs again",
            "Tab characters in the tokenizer crash the lexer",
            ["src/lexer.py", "src/tokens.py"],
            "test",
        ),
    ]


def test_knn_files_answers_the_files_of_the_most_similar_dev_issue(tmp_path, isolated_home):
    from orchestrator.client.llm_client import LLMClient
    from orchestrator.config import load_config

    cfg = load_config(nlbse_project(tmp_path, plant_in=None))
    cfg_text = (tmp_path / "orchestrator.toml").read_text() + (
        '\n[models."trained/knn-files"]\nprovider = "trained"\nmodel = "knn-files"\noptions = { files = 1 }\n'
    )
    (tmp_path / "orchestrator.toml").write_text(cfg_text)
    cfg = load_config(tmp_path / "orchestrator.toml")
    from orchestrator.runs.runner import run_grid
    from orchestrator.runs.store import results_df

    issues = _fix_issues()
    with LLMClient(cfg) as client:
        summary = client.run_sync(
            run_grid(issues, ["trained/knn-files"], ["fix"], client=client, run_id="f", progress=False)
        )
    assert summary.status == "finished"
    df = results_df("f", home=isolated_home).set_index("issue_id")
    assert "- src/lexer.py" in df.loc["a/b#4", "text"] and "session" not in df.loc["a/b#4", "text"]
    assert df.loc["a/b#4", "score"] == 0.5  # one of its two gold files
    # dev issue 1's fold model never saw issue 1: its answer comes from another dev issue
    assert "src/lexer.py" not in df.loc["a/b#1", "text"]


def test_lead_k_answers_the_first_sentences_and_a_grid_leaves_out_what_a_kind_cannot_answer(
    tmp_path, isolated_home, caplog
):
    from orchestrator.client.llm_client import LLMClient
    from orchestrator.config import load_config
    from orchestrator.runs.runner import run_grid
    from orchestrator.runs.store import results_df

    (tmp_path / "orchestrator.toml").write_text(
        '[defaults]\nmodel = "trained/lead-2"\n[models."trained/lead-2"]\nprovider = "trained"\n'
        'model = "lead-k"\noptions = { k = 2 }\n'
    )
    cfg = load_config(tmp_path / "orchestrator.toml")
    issue = Issue(
        id="a/b#9",
        repo="a/b",
        title="T",
        split="test",
        body="First sentence is here. Second sentence is here too. Third one is not taken.",
    )
    with LLMClient(cfg) as client:
        summary = client.run_sync(
            run_grid(
                [issue],
                ["trained/lead-2"],
                ["summarize", "classify"],
                client=client,
                run_id="l",
                progress=False,
            )
        )
    assert summary.cells_total == 1
    df = results_df("l", home=isolated_home)
    assert list(df["mode"]) == ["summarize"]
    assert df["text"].iloc[0] == "First sentence is here. Second sentence is here too."
    assert "trained/lead-2 answers free-text tasks" in caplog.text and "not classify" in caplog.text


def test_ask_needs_training_data_or_a_training_file(tmp_path, isolated_home, capsys):
    cfg = nlbse_project(tmp_path, plant_in=None)
    ask = [
        "--config",
        str(cfg),
        "ask",
        "--model",
        "trained/tfidf-logreg",
        "--task",
        "classify",
        "The app crashes with a traceback when I click save",
    ]
    code = main(ask)
    err = capsys.readouterr().err
    assert code != 0 and "not trained for classify" in err and 'options = { train = "FILE" }' in err
    curated = Path(__file__).parents[2] / "datasets" / "issues.jsonl"
    text = cfg.read_text().replace(
        'model = "tfidf-logreg"\n', f'model = "tfidf-logreg"\noptions = {{ train = "{curated}" }}\n', 1
    )
    cfg.write_text(text)
    assert main(ask) == 0
    out = capsys.readouterr().out
    answer = json.loads(out[out.index("{") : out.index("}") + 1])
    assert answer["type"] in ("bug", "feature", "question", "docs") and answer["severity"]


def test_an_unknown_option_names_the_model_and_the_option(tmp_path, capsys):
    cfg = nlbse_project(tmp_path, plant_in=None)
    cfg.write_text(
        cfg.read_text().replace(
            'model = "tfidf-logreg"\n', 'model = "tfidf-logreg"\noptions = { Cee = 2 }\n', 1
        )
    )
    args = [
        "--config",
        str(cfg),
        "run",
        "--dataset",
        str(tmp_path / "nlbse.jsonl"),
        "--tasks",
        "nlbse",
        "--models",
        "trained/tfidf-logreg",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "'trained/tfidf-logreg': unknown option 'Cee'" in err and "known: ngram_max" in err


def test_the_explore_path_trains_on_the_shown_issues_and_answers_a_dev_issue_out_of_sample(tmp_path):
    from orchestrator.client.llm_client import LLMClient
    from orchestrator.config import load_config
    from orchestrator.issues import load_issues
    from orchestrator.trained.fitting import FITTED
    from orchestrator.workbench.explore import compare_answers

    cfg = load_config(nlbse_project(tmp_path, plant_in=None))
    issues = load_issues(Path(__file__).parents[2] / "datasets" / "issues.jsonl")
    dev = next(i for i in issues if i.split == "dev")
    with LLMClient(cfg) as client:
        untrained = compare_answers(client, dev, ["trained/tfidf-logreg"], "classify")
        assert "not trained for classify" in untrained["error"].iloc[0]
        frame = compare_answers(client, dev, ["trained/tfidf-logreg"], "classify", training=issues)
    assert frame["error"].fillna("").iloc[0] == ""
    assert json.loads(frame["answer"].iloc[0])["type"] in ("bug", "feature", "question", "docs")
    fitted = FITTED[("trained/tfidf-logreg", "classify")]
    assert dev.id in fitted.held_out and dev.id in fitted.train_ids
    assert not fitted.train_ids & {i.id for i in issues if i.split == "test"}


def test_the_benchmark_runs_trained_baselines_and_learns_a_router_from_the_store(
    tmp_path, capsys, monkeypatch
):
    """The notebook's calls and the CLI on one curated run: trained baselines beside the rules, then a
    learned router per task from the issues the store keeps (no --dataset)."""
    from orchestrator.workbench import learned_routing, run_benchmark

    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "orchestrator.toml"
    cfg.write_text(
        '[defaults]\nmodel = "baseline/rules"\n[models."baseline/rules"]\nprovider = "baseline"\n'
        '[models."trained/tfidf-logreg"]\nprovider = "trained"\nmodel = "tfidf-logreg"\n'
        '[models."trained/knn-files"]\nprovider = "trained"\nmodel = "knn-files"\n'
    )
    curated = Path(__file__).parents[2] / "datasets" / "issues.jsonl"
    models = "baseline/rules,trained/tfidf-logreg,trained/knn-files"
    bench = run_benchmark(
        curated, models=models, modes="classify,fix", config=str(cfg), progress=False, run_id="b"
    )
    assert bench.summary.cells_total == 128 * 4  # knn-files: fix only; tfidf-logreg: classify only
    results, skipped = learned_routing(bench, n_boot=200)
    assert {r.task for r in results} == {"classify", "fix"} and not skipped
    for result in results:
        assert result.cost_axis == "latency" and result.n_dev == 64 and result.n_test == 64
        policies = " ".join(result.comparators["policy"])
        for name in ("learned router", "best single of dev", "cascade", "random at", "oracle", "strongest"):
            assert name in policies
        oracle = result.comparators[result.comparators["policy"].str.startswith("oracle")].iloc[0]
        assert (result.comparators["mean"] <= oracle["mean"] + 1e-12).all()
    capsys.readouterr()
    assert (
        main(
            [
                "--config",
                str(cfg),
                "route",
                "b",
                "--router",
                "learned",
                "--cost",
                "latency",
                "--n-boot",
                "100",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("test replay (64 issues") == 2 and "(dry run" in out
