"""Identical requests in flight at once are sent once (a real loopback server counts them).

Two configs over the same model whose settings agree send byte-identical requests: the second waits for
the first's answer and gets it as a cache hit (free, noted ``coalesced``). A failure of the first lets the
waiter send its own; ``cache="off"`` and a different request never wait.
"""

from __future__ import annotations

import asyncio
import threading

from helpers.fault_server import Sleeps, config_for
from helpers.stream_events import openai_events
from helpers.stream_server import StreamServer

from orchestrator.client import LLMClient, RetryPolicy

PIECES = ["A shared ", "answer."]


def _models(url: str) -> dict:
    table = {
        "provider": "openai",
        "model": "m",
        "base_url": f"{url}/v1",
        "temperature": 0.0,
        "price": {"input": 1.0, "output": 2.0, "as_of": "2026-12-01"},
    }
    return {"srv/greedy": dict(table), "srv/twin": dict(table)}  # two ids, one request


async def _both(client: LLMClient, first: dict, second: dict):
    a = asyncio.ensure_future(client.complete("same question", **first))
    await asyncio.sleep(0.2)  # the first is in flight, held by the server's gate
    b = asyncio.ensure_future(client.complete("same question", **second))
    await asyncio.sleep(0.2)
    return a, b


def test_a_twin_request_waits_for_the_first_answer_instead_of_sending(tmp_path) -> None:
    gate = threading.Event()
    with StreamServer() as server:
        server.stream(openai_events(PIECES, model="m", prompt_tokens=5, completion_tokens=3), gates={1: gate})
        client = LLMClient(config_for(_models(server.url)), sleep=Sleeps())

        async def scenario():
            a, b = await _both(client, {"model": "srv/greedy", "stream": True}, {"model": "srv/twin"})
            assert not b.done()  # it waits for the answer in flight
            gate.set()
            return await a, await b

        first, second = client.run_sync(scenario())
        client.close()
        assert server.count == 1
    assert first.text == second.text == "".join(PIECES)
    assert not first.from_cache and second.from_cache and "coalesced" in second.notes
    assert second.model == "srv/twin" and second.cost_usd == 0.0 and second.cost_saved_usd == first.cost_usd
    assert second.latency_s >= 0.15  # it waited for the first


def test_when_the_first_fails_the_waiter_sends_its_own_and_cache_off_never_waits(tmp_path) -> None:
    gate = threading.Event()
    with StreamServer() as server:
        events = openai_events(PIECES, model="m", prompt_tokens=5, completion_tokens=3)
        server.stream(events, gates={0: gate}, cut_after=0)  # the first request dies before any token...
        server.stream(events)  # ...and the waiter's own request is answered
        client = LLMClient(config_for(_models(server.url)), sleep=Sleeps(), retry=RetryPolicy(max_attempts=1))

        async def failing():
            a, b = await _both(
                client, {"model": "srv/greedy", "stream": True}, {"model": "srv/twin", "stream": True}
            )
            gate.set()
            return await asyncio.gather(a, b, return_exceptions=True)

        first, second = client.run_sync(failing())
        assert isinstance(first, Exception) and second.text == "".join(PIECES) and not second.from_cache
        assert server.count == 2

        gate2 = threading.Event()
        server.stream(events, gates={1: gate2})
        server.stream(events)

        async def uncached():
            kw = {"cache": "off", "stream": True}
            a, b = await _both(client, {"model": "srv/greedy", **kw}, {"model": "srv/twin", **kw})
            gate2.set()
            return await a, await b

        x, y = client.run_sync(uncached())
        client.close()
        assert server.count == 4 and not x.from_cache and not y.from_cache
