"""Tests of tests/helpers/fault_server.py itself, with plain sync httpx and raw sockets: each kind does what it
claims, requests are counted when their head arrives, billing follows its definition, and streaming
answers stop when the client leaves or the server stops."""

from __future__ import annotations

import json
import socket
import time
import zlib
from collections.abc import Iterator

import httpx
import pytest
from helpers.fault_server import (
    BILLED_KINDS,
    FAULTS,
    HOSTILE_FAULTS,
    LONE_SURROGATE,
    Action,
    Blackhole,
    FaultServer,
    gzip_bomb,
)

PATH = "/chat/completions"
PROMPT = "Summarize issue [call:{}] " + "x" * 80  # 80 + ~30 characters: 27 prompt tokens at chars / 4


def body(call_id: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": PROMPT.format(call_id)}]}


def prompt_tokens(call_id: str) -> int:
    return len(PROMPT.format(call_id)) // 4


@pytest.fixture
def server() -> Iterator[FaultServer]:
    srv = FaultServer(
        drip_interval_s=0.002,
        bomb_decoded_bytes=8 << 20,
        junk_bytes=2_000_000,
        huge_error_bytes=1_000_000,
        completion_tokens=7,
    ).start()
    try:
        yield srv
    finally:
        srv.stop()


_http: list[httpx.Client] = []  # one client for the module: each new one builds a TLS context (~0.2 s)


@pytest.fixture(scope="module", autouse=True)
def http_client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as client:
        _http.append(client)
        yield client
        _http.remove(client)


def http() -> httpx.Client:
    return _http[0]


def post(srv: FaultServer, call_id: str, **kw) -> httpx.Response:
    return http().post(srv.url + PATH, json=body(call_id), **kw)


def only(kind: str, **action):
    return lambda req: Action(kind, **action)


def raw_request(srv: FaultServer, data: bytes) -> None:
    """Send ``data`` on a fresh connection and hang up without reading."""
    with socket.create_connection(("127.0.0.1", int(srv.url.split(":")[2].split("/")[0]))) as s:
        if data:
            s.sendall(data)


def wait_for(cond, timeout_s: float = 2.0) -> bool:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


# ---------------------------------------------------------------------- counting


def test_request_counted_at_head_even_if_body_never_arrives(server: FaultServer):
    head = f"POST /v1{PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    partial = json.dumps(body("cut1")).encode()[:90]  # the tag is in the first 90 bytes
    raw_request(server, (head + "content-length: 500\r\n\r\n").encode() + partial)
    raw_request(server, (head + "x-call-id: hdr1\r\ncontent-length: 500\r\n\r\n").encode())
    raw_request(server, b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")  # the head is cut
    raw_request(server, b"")  # connected, then gave up before sending a byte
    assert wait_for(lambda: server.connections == 4 and server.active() == 0)
    assert server.count() == 3 and server.count("cut1") == 1 and server.count("hdr1") == 1
    assert [r.complete for r in server.requests] == [False, False, False]
    assert server.empty_connections == 1 and server.in_flight == 0 and not server.actions


def test_call_id_from_body_tag_then_header(server: FaultServer):
    http().post(server.url + PATH, json=body("tagged"), headers={"x-call-id": "hdr"})
    http().post(server.url + PATH, json={"messages": []}, headers={"x-call-id": "hdr"})
    http().post(server.url + PATH, json={"messages": []})
    assert [(r.call_id, r.attempt) for r in server.requests] == [("tagged", 1), ("hdr", 1), ("anon-1", 1)]


# ---------------------------------------------------------------------- hostile kinds


def test_drip_sends_one_byte_per_interval_and_is_billed_once_complete(server: FaultServer):
    server.script = only("drip")
    started = time.monotonic()
    with http().stream("POST", server.url + PATH, json=body("d1")) as r:
        headers_at = time.monotonic() - started
        pieces = list(r.iter_raw())
    elapsed = time.monotonic() - started
    data, size = b"".join(pieces), int(r.headers["content-length"])
    assert r.status_code == 200 and len(data) == size
    assert json.loads(data)["choices"][0]["message"]["content"] == "answer d1"
    assert headers_at < 0.5 and elapsed >= (size - 1) * 0.002  # headers at once, then the drip
    assert len(pieces) > size // 4  # it did arrive a byte or a few at a time
    assert server.billed_count("d1") == 1


@pytest.mark.parametrize("kind", ["drip", "junk", "slow"])
def test_streaming_stops_when_the_client_leaves_and_is_not_billed(server: FaultServer, kind: str):
    server.drip_interval_s, server.junk_bytes = 0.05, 500_000_000
    server.script = only(kind, delay_s=30.0)
    if kind == "slow":
        with pytest.raises(httpx.ReadTimeout):
            post(server, "d2", timeout=0.1)
    else:
        with http().stream("POST", server.url + PATH, json=body("d2")) as r:
            next(r.iter_raw())
    assert server.wait_idle(2.0), f"the {kind} answer kept going after the client hung up"
    assert server.billed_count() == 0 and server.count("d2") == 1


def test_bomb_is_small_on_the_wire_and_huge_decoded(server: FaultServer):
    server.script = only("bomb")
    with http().stream("POST", server.url + PATH, json=body("b1")) as r:
        wire = b"".join(r.iter_raw())
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert wire == gzip_bomb(8 << 20) and len(wire) < (8 << 20) // 500
    inflater, decoded, data = zlib.decompressobj(16 + zlib.MAX_WBITS), 0, wire
    while data:
        decoded += len(inflater.decompress(data, 1 << 20))
        data = inflater.unconsumed_tail
    assert decoded == 8 << 20 and inflater.eof
    assert server.billed_count() == 0


def test_gzip_bomb_sizes():
    assert len(gzip_bomb(0)) == 20
    small = gzip_bomb(3 * 1000 + 7, b" ", segment=1000)  # three segments and a remainder
    assert zlib.decompress(small, 16 + zlib.MAX_WBITS) == b" " * 3007
    assert gzip_bomb(1 << 20) is gzip_bomb(1 << 20)  # built once
    with pytest.raises(ValueError):
        gzip_bomb(10, b"ab")


def test_junk_is_random_bytes_of_the_given_size(server: FaultServer):
    server.script = only("junk")
    r = post(server, "j1")
    assert r.status_code == 200 and len(r.content) == 2_000_000 == int(r.headers["content-length"])
    assert len(set(r.content[:4096])) > 200  # random, not a fill
    with pytest.raises(ValueError):
        json.loads(r.content)
    assert server.billed_count() == 0


def test_echo_leaks_authorization_and_x_headers(server: FaultServer):
    server.script = only("echo")
    key = "sk-test-0123456789abcdef"
    r = post(server, "e1", headers={"authorization": f"Bearer {key}", "x-api-key": "k-2", "x-title": "t"})
    text = r.json()["choices"][0]["message"]["content"]
    assert f"Bearer {key}" in text and "x-api-key=k-2" in text and "x-title=t" in text
    assert server.billed_count("e1") == 1


@pytest.mark.parametrize(
    ("kind", "expect"),
    [
        ("no_usage", None),
        ("negative_usage", lambda pt, ct: {"prompt_tokens": -pt, "completion_tokens": -ct}),
        ("string_usage", lambda pt, ct: {"prompt_tokens": str(pt), "completion_tokens": str(ct)}),
    ],
)
def test_bad_usage_kinds_bill_the_true_tokens(server: FaultServer, kind, expect):
    server.script = only(kind)
    answer = post(server, "u1").json()
    pt, ct = prompt_tokens("u1"), 7
    if expect is None:
        assert "usage" not in answer
    else:
        assert {k: answer["usage"][k] for k in ("prompt_tokens", "completion_tokens")} == expect(pt, ct)
    assert answer["choices"][0]["message"]["content"] == "answer u1"
    assert server.billed_count() == 1 and server.billed_tokens("u1") == (pt, ct)
    assert server.true_cost(2.0, 10.0) == pytest.approx((pt * 2.0 + ct * 10.0) / 1e6)


def test_surrogate_escape_reaches_the_client_raw(server: FaultServer):
    server.script = only("surrogate")
    r = post(server, "s1")
    assert LONE_SURROGATE.encode() in r.content
    text = json.loads(r.content)["choices"][0]["message"]["content"]
    assert text.endswith("\ud83d")
    with pytest.raises(UnicodeEncodeError):
        text.encode("utf-8")
    assert server.billed_count() == 1


@pytest.mark.parametrize("content", [[72, 105], 42])
def test_nonstring_content(server: FaultServer, content):
    server.script = only("nonstring_content", content=content)
    assert post(server, "n1").json()["choices"][0]["message"]["content"] == content
    assert server.billed_count() == 1


def test_redirect_points_at_another_host(server: FaultServer):
    server.script = only("redirect")
    r = post(server, "r1")  # httpx does not follow redirects unless asked
    assert r.status_code == 302
    assert r.headers["location"] == "http://other-host.invalid/v1/chat/completions"
    assert server.billed_count() == 0


def test_huge_error_has_no_error_or_message_key(server: FaultServer):
    server.script = only("huge_error")
    r = post(server, "h1")
    assert r.status_code == 500 and len(r.content) == 1_000_000
    assert not {"error", "message"} & set(r.json())
    assert server.billed_count() == 0


# ---------------------------------------------------------------------- billing and the draw


def test_billed_counts_only_delivered_answers(server: FaultServer):
    answers = {"a1": Action(), "a2": Action.error(429), "a4": Action("invalid_json"), "a5": Action("reset")}
    answers["a3"] = Action("slow", delay_s=0.6)  # the client gives up after 0.1 s
    answers["a6"] = Action(body={"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": 5}})
    server.script = lambda req: answers[req.call_id]
    for call_id in ("a1", "a2", "a4", "a5", "a6"):
        try:
            post(server, call_id)
        except httpx.HTTPError:
            pass
    with pytest.raises(httpx.ReadTimeout):
        post(server, "a3", timeout=0.1)
    assert server.wait_idle(2.0)
    assert server.count() == 6
    assert [b.call_id for b in server.bills] == ["a1", "a6"] and server.billed_count() == 2
    assert server.billed_tokens("a1") == (prompt_tokens("a1"), 7)
    assert server.billed_tokens("a6") == (prompt_tokens("a6"), 7)  # its usage is incomplete: true tokens


def test_draw_picks_from_any_tuple():
    with FaultServer(
        fault_rate=1.0,
        seed=3,
        faults=HOSTILE_FAULTS,
        drip_interval_s=0.0002,
        bomb_decoded_bytes=1 << 20,
        junk_bytes=100_000,
        huge_error_bytes=10_000,
    ) as srv:
        for i in range(60):
            http().post(srv.url + PATH, json=body(f"h{i}"))
        assert set(srv.actions) == set(HOSTILE_FAULTS)
        assert srv.billed_count() == sum(n for k, n in srv.actions.items() if k in BILLED_KINDS)
    with pytest.raises(ValueError):
        FaultServer(faults=("ok", "melt"))
    mixed = FaultServer(faults=FAULTS + HOSTILE_FAULTS)  # any mix is accepted; each name maps to an Action
    assert {mixed.fault_action(f).kind for f in FAULTS + HOSTILE_FAULTS} >= set(HOSTILE_FAULTS)


# ---------------------------------------------------------------------- stopping


@pytest.mark.parametrize("kind", ["drip", "junk"])
def test_stop_returns_promptly_mid_stream(kind):
    srv = FaultServer(drip_interval_s=1.0, junk_bytes=500_000_000, script=only(kind)).start()
    port = int(srv.url.split(":")[2].split("/")[0])
    payload = json.dumps(body("x1")).encode()
    with socket.create_connection(("127.0.0.1", port)) as s:
        head = f"POST /v1{PATH} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(payload)}\r\n\r\n"
        s.sendall(head.encode() + payload)
        s.recv(1)  # the answer has started; the client now stops reading (junk fills the buffers)
        assert srv.active() == 1
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 3.0
    assert srv.active() == 0


def test_blackhole_never_accepts():
    with Blackhole() as hole:
        started = time.monotonic()
        with pytest.raises(httpx.ConnectTimeout):
            http().post(hole.url + PATH, json=body("z"), timeout=httpx.Timeout(1.0, connect=0.2))
        assert time.monotonic() - started < 1.0
