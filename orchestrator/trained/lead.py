"""The floor of a free-text task: the issue's first k sentences (Lead-k, the classic summarization
baseline). Nothing to fit: it is here so every task has a classical floor of the same family."""

from __future__ import annotations

from typing import Any

from ..types import Issue


class LeadModel:
    def __init__(self, params: dict[str, Any]) -> None:
        self.params = dict(params)

    def answer(self, issue: Issue) -> str:
        from ..providers.baseline import sentences

        picked = sentences(issue.body)[: int(self.params["k"])]
        return " ".join(picked) if picked else issue.title.strip()
