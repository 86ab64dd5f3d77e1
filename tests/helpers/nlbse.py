"""A synthetic file shaped like NLBSE'24's issue-report classification set (repo, created_at, label, title,
body, split): five repositories, labels bug/feature/question, train rows as dev and test rows as test.

Each label has cue words that appear in some of its issues (so a classifier can learn, but not perfectly),
over a long tail of shared words, so the vocabulary with bigrams is the size of a real set's."""

from __future__ import annotations

import csv
import random
from pathlib import Path

REPOS = ("facebook/react", "tensorflow/tensorflow", "microsoft/vscode", "bitcoin/bitcoin", "opencv/opencv")
LABELS = ("bug", "feature", "question")
CUES = {
    "bug": [
        "crash",
        "error",
        "exception",
        "fails",
        "broken",
        "regression",
        "traceback",
        "wrong",
        "segfault",
        "unexpected",
    ],
    "feature": [
        "add",
        "support",
        "option",
        "allow",
        "proposal",
        "enhancement",
        "would",
        "nice",
        "request",
        "new",
    ],
    "question": [
        "how",
        "why",
        "possible",
        "help",
        "understand",
        "anyone",
        "explain",
        "usage",
        "recommend",
        "what",
    ],
}
IMPORT_MAP = "repo=repo,created_at=created_at,label=gold.label,title=title,body=body,split=split"


def rows(n_train: int, n_test: int, seed: int = 0, cue_rate: float = 0.3, tail: int = 6000) -> list[dict]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(tail)]
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        for k in range(n):
            repo = REPOS[k % len(REPOS)]
            label = LABELS[rng.randrange(3)]
            words = [vocab[int(tail ** rng.random()) - 1] for _ in range(rng.randint(30, 220))]
            for _ in range(rng.randint(1, 4)):
                if rng.random() < cue_rate:
                    words.insert(rng.randrange(len(words) + 1), rng.choice(CUES[label]))
            title_words = [
                rng.choice(CUES[label]) if rng.random() < cue_rate else rng.choice(vocab[:200])
                for _ in range(rng.randint(3, 9))
            ]
            out.append(
                {
                    "repo": repo,
                    "created_at": f"2023-{1 + k % 12:02d}-{1 + k % 28:02d}T10:00:00Z",
                    "label": label,
                    "title": " ".join(title_words),
                    "body": " ".join(words),
                    "split": split,
                }
            )
    return out


def write_csv(path: Path, records: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["repo", "created_at", "label", "title", "body", "split"])
        writer.writeheader()
        writer.writerows(records)
    return path


TASK = """name = "nlbse"
description = "NLBSE'24 issue report classification"
gold = "label"
labels = "dataset"

[prompts.default]
system = 'Classify the GitHub issue. Answer {"label": L}, L one of {{ labels | join(", ") }}.'
user = "{{ issue.title }}\\n\\n{{ issue.body }}"
"""


def label_mode(labels: tuple[str, ...] = LABELS):
    """The label task of such a file as a mode (not registered), for fitting without a task file."""
    from orchestrator.modes import Mode
    from orchestrator.tasks.loader import label_schema

    return Mode(
        name="nlbse",
        system_prompt="",
        user_template="",
        schema=label_schema(list(labels)),
        scorer="label",
        scorer_params={"field": "label", "key": "label"},
        task="nlbse",
    )


def issues(n_train: int, n_test: int, seed: int = 3, cue_rate: float = 0.25) -> list:
    """:func:`rows` as Issues: train rows as dev, test rows as test, the label as ``gold.label``."""
    from orchestrator.types import Gold, Issue

    return [
        Issue(
            id=f"{r['repo']}#{k}",
            repo=r["repo"],
            title=r["title"],
            body=r["body"],
            split="dev" if r["split"] == "train" else "test",
            gold=Gold.model_validate({"label": r["label"]}),
        )
        for k, r in enumerate(rows(n_train, n_test, seed=seed, cue_rate=cue_rate))
    ]
