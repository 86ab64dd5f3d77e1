"""fast_json: orjson on the hot path, the standard library's answers kept where they matter.

The cache key is the one place where the bytes themselves matter (answers stored under the old keys must
still be found), so sorted output is compared byte for byte with the standard library's over realistic
and awkward values; the fallbacks keep what orjson refuses readable, as it was."""

from __future__ import annotations

import hashlib
import json
import math
import random

import pytest

from orchestrator import fast_json

AWKWARD = [
    "",
    "plain",
    'quote " and backslash \\ and slash /',
    "tab\tnewline\ncarriage\rback\bform\f",
    "".join(chr(c) for c in range(32)) + "\x7f",
    "emoji 😀 CJK 漢字 RTL مرحبا combining é",
    "line sep \u2028 para sep \u2029 nbsp \xa0 bom \ufeff",
    '{"json": [1, 2]} inside a string',
]
NUMBERS = [0, 1, -1, 2**31, -(2**53), 2**63 - 1, 0.0, -0.0, 0.7, 1.0, 2.5, 123.456, 1e-3, 0.1 + 0.2, 1e15]


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(6 if depth < 4 else 3)
    if kind == 0:
        return rng.choice(AWKWARD) + rng.choice(["", str(rng.random())])
    if kind == 1:
        return rng.choice(NUMBERS)
    if kind == 2:
        return rng.choice([None, True, False])
    if kind == 3:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [rng.choice(AWKWARD) + str(i) for i in range(rng.randrange(5))]
    rng.shuffle(keys)
    return {k: random_value(rng, depth + 1) for k in keys}


def stdlib_sorted(value) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def test_sorted_output_is_the_standard_librarys_byte_for_byte_over_awkward_values() -> None:
    rng = random.Random(17)
    for _ in range(2000):
        value = random_value(rng)
        assert fast_json.dumps(value, sort_keys=True) == stdlib_sorted(value), value


def test_a_real_calls_cache_key_is_the_one_the_standard_library_made(tmp_path) -> None:
    """The parts of a classify call (messages from the task, its JSON schema, the params): the key an
    answer cached before orjson was stored under."""
    from orchestrator.client.call import prepare_call
    from orchestrator.config import config_from_dict
    from orchestrator.modes import build_messages, get_mode
    from orchestrator.types import Gold, Issue

    config = config_from_dict(
        {"models": {"o/m": {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}}},
        tmp_path / "orchestrator.toml",
    )
    spec, mode = config.model_spec("o/m"), get_mode("classify")
    issue = Issue(
        repo="o/r", number=1, title="Crash ✓ on save", body="KeyError\n\tat x", gold=Gold(type="bug")
    )
    call = prepare_call(config, spec, build_messages(issue, mode), mode, {"temperature": 0.7}, 2, issue)
    parts = {
        "provider": spec.provider,
        "model": spec.model,
        "base_url": spec.base_url,
        "options": {},
        "messages": [[m.role, m.content] for m in call.req.messages],
        "params": call.req.params,
        "schema": call.req.schema,
        "mode_version": mode.version,
        "repeat": 2,
    }
    assert call.req.schema and call.req.params
    assert call.key == hashlib.sha256(stdlib_sorted(parts)).hexdigest()


def test_what_orjson_refuses_to_write_is_written_as_before() -> None:
    broken = {"text": "half an emoji \ud83d", "big": 2**70}
    assert fast_json.dumps(broken) == json.dumps(broken, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
    assert json.loads(fast_json.dumps({"n": 2**70, "a": 1}, sort_keys=True)) == {"a": 1, "n": 2**70}
    assert json.loads(fast_json.dumps({"x": [1, "é"]})) == {"x": [1, "é"]}


def test_what_orjson_refuses_to_read_is_read_or_refused_as_before() -> None:
    assert fast_json.loads('"\\ud83d"') == "\ud83d"  # a lone surrogate escape: read, to be repaired
    assert math.isnan(fast_json.loads('{"x": NaN}')["x"])
    assert fast_json.loads(str(2**70)) == 2**70
    assert fast_json.loads(b'{"a": [1, 2.5, "\\u00e9"]}') == {"a": [1, 2.5, "é"]}
    with pytest.raises(ValueError):
        fast_json.loads('{"a": ')
    with pytest.raises((ValueError, RecursionError)):
        fast_json.loads("[" * 100_000 + "]" * 100_000)
