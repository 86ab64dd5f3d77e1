"""The embedded default: SmolLM2-135M in-process through llama.cpp (xllamacpp), no key, no network."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.client import LLMClient
from orchestrator.config import Config, load_config
from orchestrator.modes import CLASSIFY_SCHEMA
from orchestrator.types import ISSUE_TYPES, SEVERITIES, Comment, Issue

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROJECT_CONFIG = ROOT / "orchestrator.toml"

ISSUES = [
    Issue(
        repo="acme/widgets",
        number=1,
        title="App crashes with KeyError when saving an empty project",
        body="Steps: create a project and save it without files.\n\nTraceback (most recent call last):\n"
        "  File \"widgets/storage.py\", line 88, in save\nKeyError: 'files'\n\nExpected: the project saves.",
        labels=["bug"],
    ),
    Issue(
        repo="acme/widgets",
        number=2,
        title="Add dark mode to the settings page",
        body="It would be great to have an option to switch the UI to a dark theme.",
        labels=["enhancement"],
    ),
    Issue(
        repo="acme/widgets",
        number=3,
        title="How do I configure a proxy?",
        body="Is it possible to route requests through a corporate proxy? I could not find how.",
        comments=[Comment(author="ann", body="Same question here.")],
    ),
    Issue(
        repo="acme/widgets",
        number=4,
        title="Typo in the README installation section",
        body="The README says `pip instal widgets`; it should be `pip install widgets`.",
        labels=["docs"],
    ),
]


@pytest.fixture(scope="module")
def config(gguf_path) -> Config:
    return load_config(PROJECT_CONFIG)


@pytest.fixture(scope="module")
def client(config) -> Iterator[LLMClient]:
    c = LLMClient(config, cache=False)
    yield c
    c.close()


@pytest.mark.parametrize("mode", ["explain", "fix", "classify", "summarize"])
def test_local_answers_every_mode(client, gguf_path, mode) -> None:
    c = client.complete_sync(
        ISSUES[0], model="local/smollm2", mode=mode, max_tokens=96 if mode == "classify" else 40
    )
    assert c.text.strip()
    assert c.provider == "local" and c.model == "local/smollm2" and c.mode == mode
    assert c.usage.input_total > 0 and c.usage.output_total > 0
    assert c.usage.output_total <= (96 if mode == "classify" else 40)
    assert c.cost_usd == 0.0
    assert c.latency_s > 0
    assert c.served_model == gguf_path.name
    assert c.finish_reason in ("stop", "length")
    assert not c.from_cache and c.attempts == 1
    if mode == "classify":
        assert c.parse_error is None, c.text


def test_classify_returns_schema_valid_json(client) -> None:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(CLASSIFY_SCHEMA)
    for issue in ISSUES:
        c = client.complete_sync(issue, model="local/smollm2", mode="classify", max_tokens=96)
        assert c.parse_error is None, (issue.title, c.text, c.parse_error)
        assert c.parsed is not None
        assert c.parsed["type"] in ISSUE_TYPES
        assert c.parsed["severity"] in SEVERITIES
        assert list(validator.iter_errors(c.parsed)) == []
        assert json.loads(c.text) == c.parsed  # grammar-constrained: the whole answer is the JSON


def test_same_seed_at_temperature_zero_is_reproducible(client) -> None:
    kw = dict(model="local/smollm2", mode="summarize", max_tokens=40, temperature=0.0, seed=1)
    a = client.complete_sync(ISSUES[1], **kw)
    b = client.complete_sync(ISSUES[1], **kw)
    assert not a.from_cache and not b.from_cache
    assert a.text == b.text and a.text.strip()
    assert a.usage.output_total == b.usage.output_total


def test_sampling_is_seeded(client) -> None:
    prompt = "Write one imaginative sentence about a lighthouse keeper and a storm."
    kw = dict(model="local/smollm2-creative", max_tokens=32, temperature=0.8)
    a = client.complete_sync(prompt, seed=7, **kw)
    b = client.complete_sync(prompt, seed=7, **kw)
    assert a.text == b.text, "the same seed at temperature 0.8 gives the same sample"
    others = {client.complete_sync(prompt, seed=s, **kw).text for s in (101, 202, 303)}
    assert len(others) > 1, f"three seeds at temperature 0.8 all gave {others!r}"


def test_creative_model_uses_its_mode_overrides(client) -> None:
    """smollm2-creative: fix runs at 0.0, so two seeds give the same answer."""
    kw = dict(model="local/smollm2-creative", mode="fix", max_tokens=32)
    assert (
        client.complete_sync(ISSUES[0], seed=1, **kw).text
        == client.complete_sync(ISSUES[0], seed=2, **kw).text
    )


def test_gguf_loaded_once_and_shared(client, config, gguf_path) -> None:
    from orchestrator.providers.local import engine_for, loaded_engines

    client.complete_sync("Say hi.", model="local/smollm2", max_tokens=4)
    client.complete_sync("Say hi.", model="local/smollm2-creative", max_tokens=4)
    same = engine_for(config.model_spec("local/smollm2")) is engine_for(
        config.model_spec("local/smollm2-creative")
    )
    assert same
    for_path = [e for e in loaded_engines() if e.path.resolve() == gguf_path.resolve()]
    assert len({id(e) for e in for_path}) == len({e.n_ctx for e in for_path})  # one per context size
    assert any(e is engine_for(config.model_spec("local/smollm2")) for e in for_path)


def test_gguf_loaded_once_in_a_fresh_process(gguf_path, tmp_path) -> None:
    """In a process of its own: after calls to both models there is exactly one engine."""
    code = (
        "import json, sys\n"
        "from orchestrator import LLMClient\n"
        "from orchestrator.providers.local import loaded_engines\n"
        f"client = LLMClient({str(PROJECT_CONFIG)!r}, cache=False)\n"
        "a = client.complete_sync('Say hi.', model='local/smollm2', max_tokens=4)\n"
        "b = client.complete_sync('Say hi.', model='local/smollm2-creative', max_tokens=4)\n"
        "print(json.dumps({'engines': [str(e.path) for e in loaded_engines()], 'served': [a.served_model, b.served_model]}))\n"
        "client.close()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["engines"] == [str(gguf_path)]
    assert report["served"] == [gguf_path.name, gguf_path.name]


async def test_sync_form_works_inside_a_running_loop(client) -> None:
    c = client.complete_sync("Say hello.", model="local/smollm2", max_tokens=8)  # inside this test's loop
    assert c.text.strip()
    d = await client.complete("Say hello.", model="local/smollm2", max_tokens=8)
    assert d.text == c.text


def test_context_overflow_is_a_typed_error(config) -> None:
    """A prompt beyond the context window fails with a typed, terminal error (not a crash or a hang)."""
    from orchestrator import errors as E

    client = LLMClient(config, cache=False)
    try:
        with pytest.raises(E.ProviderError) as info:
            client.complete_sync("word " * 9000, model="local/smollm2", max_tokens=8)
    finally:
        client.close()
    assert isinstance(info.value, (E.ContextTooLongError, E.BadRequestError, E.AllModelsFailedError)), (
        info.value
    )


def test_engine_context_covers_the_configured_context_window(config) -> None:
    from orchestrator.providers.local import engine_for

    spec = config.model_spec("local/smollm2")
    assert spec.context_window
    assert engine_for(spec).n_ctx >= spec.context_window
