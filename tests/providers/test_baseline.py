"""The rule baseline reads the issue's fields from the request, not the rendered prompt's text."""

from __future__ import annotations

import json

from helpers.fault_server import config_for

from orchestrator.providers.base import ChatRequest
from orchestrator.providers.baseline import ADAPTER
from orchestrator.types import Issue, Message

ISSUE = Issue(
    repo="acme/app",
    number=7,
    title="Crash when saving a file",
    body='Traceback (most recent call last):\n  File "src/storage/save.py", line 12\nKeyError: path',
    labels=["bug"],
)


async def test_the_baseline_ignores_the_prompt_wording_when_it_has_the_issue():
    spec = config_for({"baseline/rules": {"provider": "baseline"}}).model_spec("baseline/rules")
    # a prompt in any wording: no "Issue #", no "Labels:", no "Description:" for a parser to find
    messages = [Message(role="user", content="Label this, please.")]
    req = ChatRequest(spec=spec, messages=messages, params={}, mode="classify", issue=ISSUE)
    answer = json.loads((await ADAPTER.send(req, None)).text)
    assert answer == {"type": "bug", "component": "storage", "severity": "high"}
    req = ChatRequest(spec=spec, messages=messages, params={}, mode="fix", issue=ISSUE)
    assert "src/storage/save.py" in (await ADAPTER.send(req, None)).text
    req = ChatRequest(spec=spec, messages=messages, params={}, mode="summarize", issue=ISSUE)
    assert (await ADAPTER.send(req, None)).text.startswith("Crash when saving a file.")


async def test_free_text_without_an_issue_is_read_as_a_description():
    spec = config_for({"baseline/rules": {"provider": "baseline"}}).model_spec("baseline/rules")
    text = "How do I configure the cache? The docs do not say."
    req = ChatRequest(spec=spec, messages=[Message(role="user", content=text)], params={}, mode="classify")
    assert json.loads((await ADAPTER.send(req, None)).text)["type"] == "question"
