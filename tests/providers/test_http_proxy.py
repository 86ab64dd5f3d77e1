"""The pool takes its proxy from the environment (HTTP_PROXY, NO_PROXY), as a user behind a proxy expects.

The loopback ``ProviderServer`` plays the proxy: an HTTP proxy receives the request in absolute form
(``POST http://host/path``), and answers it.
"""

from __future__ import annotations

import pytest
from helpers.provider_server import ProviderServer

from orchestrator.config import ModelSpec
from orchestrator.providers.base import ChatRequest
from orchestrator.providers.http import HttpPool
from orchestrator.providers.openai import ADAPTER
from orchestrator.types import Message

ANSWER = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "via the proxy"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
}


def request(base_url: str) -> ChatRequest:
    spec = ModelSpec(id="p/m", provider="openai", model="m", base_url=base_url)
    return ChatRequest(spec=spec, messages=[Message(role="user", content="hi")], params={"max_tokens": 8})


@pytest.mark.parametrize("bypass", [False, True])
async def test_http_proxy_from_the_environment_and_no_proxy(monkeypatch, bypass) -> None:
    with ProviderServer() as proxy, ProviderServer() as direct:
        proxy.reply(200, ANSWER)
        direct.reply(200, ANSWER)
        for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "http_proxy", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        # the direct server is on 127.0.0.1 too: NO_PROXY names it by its port-less host only when bypassing
        monkeypatch.setenv("NO_PROXY", "127.0.0.1" if bypass else "example.invalid")
        pool = HttpPool()
        try:
            response = await ADAPTER.send(request(direct.url + "/v1"), pool)
        finally:
            await pool.aclose()
        assert response.text == "via the proxy"
        if bypass:
            assert not proxy.requests and direct.requests[0].path == "/v1/chat/completions"
        else:
            assert not direct.requests
            assert proxy.requests[0].path == direct.url + "/v1/chat/completions"  # absolute form: a proxy
