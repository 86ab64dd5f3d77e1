"""Adding a provider is one module plus one registration line: proven from this test file alone.

The provider below lives here; registering it must make the config accept it, the client call it, the
price logic treat it as free, the sampling checks apply, and ``orchestrator models`` list it, with no edit
to the package.
"""

from __future__ import annotations

import pytest
from helpers.fault_server import config_for

from orchestrator.cli import main
from orchestrator.client import LLMClient
from orchestrator.providers import PROVIDERS, ProviderInfo, provider_names, register_provider
from orchestrator.providers.base import Adapter, ChatRequest, ProviderResponse
from orchestrator.providers.sampling import SamplingRanges
from orchestrator.types import Usage


class ShoutAdapter(Adapter):
    """A provider that answers with the user's message in capitals."""

    name = "shout"

    async def send(self, req: ChatRequest, pool) -> ProviderResponse:
        text = req.chat[-1].content.upper()
        return ProviderResponse(text=text, usage=Usage(input_uncached=len(text), output=len(text)))


ADAPTER = ShoutAdapter()


@pytest.fixture
def shout():
    before = dict(PROVIDERS)
    register_provider(
        ProviderInfo(
            "shout",
            __name__,
            free=True,
            sampling=SamplingRanges(temperature=(0.0, 0.5), top_p=None, seed=None, source="this test"),
        )
    )
    yield
    PROVIDERS.clear()
    PROVIDERS.update(before)


def test_the_builtin_providers_are_registered():
    assert provider_names() == [
        "openai",
        "openrouter",
        "anthropic",
        "cohere",
        "gemini",
        "ollama",
        "local",
        "baseline",
        "trained",
    ]


async def test_a_provider_registered_from_a_test_file_works_everywhere(shout, tmp_path, capsys):
    cfg = config_for({"shout/loud": {"provider": "shout"}})
    client = LLMClient(cfg, cache=False)
    completion = await client.complete("hello there", model="shout/loud")
    assert completion.text == "HELLO THERE"
    assert completion.cost_usd == 0.0  # free: priced at 0, not unknown
    with pytest.raises(Exception, match="temperature 0.9 is outside what shout accepts"):
        await client.complete("hi", model="shout/loud", temperature=0.9)
    await client.aclose()

    path = tmp_path / "orchestrator.toml"
    path.write_text('[models."shout/loud"]\nprovider = "shout"\n')
    assert main(["--config", str(path), "models"]) == 0
    out = capsys.readouterr().out
    assert "shout/loud" in out and "free" in out


def test_an_unregistered_provider_is_a_config_error_listing_the_known_ones(tmp_path, capsys):
    path = tmp_path / "orchestrator.toml"
    path.write_text('[models."shout/loud"]\nprovider = "shout"\n')
    assert main(["--config", str(path), "models"]) == 2
    err = capsys.readouterr().err
    assert "unknown provider 'shout'" in err and "baseline" in err
