"""Hostile and mistaken orchestrator.toml files: every one is a ConfigError naming the file and the key
(the CLI exits 2 with one readable message, never a traceback), and the per-provider sampling ranges
agree with the providers' API descriptions."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import MAX_PRICE_PER_MTOK, config_from_dict, load_config
from orchestrator.errors import BadRequestError, ConfigError
from orchestrator.providers import SAMPLING_RANGES, check_call_params, sampling_problems
from orchestrator.routing import Selection, routing_entry

ROOT = Path(__file__).resolve().parents[1]
GOOD_MODEL = '[models."baseline/rules"]\nprovider = "baseline"\n'


def write(tmp_path: Path, text: str | bytes, name: str = "orchestrator.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def model(model_id: str, body: str) -> str:
    return f'{GOOD_MODEL}[models."{model_id}"]\n{body}\n'


# --------------------------------------------------------------------------- prices


@pytest.mark.parametrize(
    ("axis", "written", "shown"),
    [
        ("input", "nan", "nan"),
        ("output", "inf", "inf"),
        ("cache_read", "1e400", "inf"),  # TOML reads an overflowing float as inf
        ("cache_write", "-inf", "-inf"),
        ("reasoning", "+nan", "nan"),
        ("input", "10000.5", "10000.5"),
        ("output", "600000", "600000"),  # a price per token typed as per million tokens, times a million
    ],
)
def test_non_finite_or_absurd_price_is_refused(tmp_path, axis, written, shown) -> None:
    price = {"input": "1", "output": "2", axis: written}
    inline = ", ".join(f"{k} = {v}" for k, v in price.items())
    path = write(tmp_path, model("openai/x", f"price = {{ {inline} }}"))
    msg = config_error(path)
    assert msg == (
        f"{path}: [models.\"openai/x\"] key 'price.{axis}': must be a finite number of USD per million "
        f"tokens, at most {MAX_PRICE_PER_MTOK} (got {shown})"
    )


def test_prices_up_to_the_cap_are_accepted(tmp_path) -> None:
    path = write(
        tmp_path,
        model("openai/x", "price = { input = 600, output = 10000, cache_read = 0, reasoning = 9999.99 }"),
    )
    price = load_config(path).model_spec("openai/x").price
    assert price is not None and (price.input, price.output, price.reasoning) == (600, 10000, 9999.99)


def test_negative_and_non_numeric_prices_still_named(tmp_path) -> None:
    path = write(tmp_path, model("openai/x", 'price = { input = -1, output = "cheap" }'))
    msg = config_error(path)
    assert "key 'price.input': must be >= 0 USD per million tokens (got -1)" in msg
    assert "key 'price.output': must be a finite number" in msg and "'cheap'" in msg


# --------------------------------------------------------------------------- limits, timeouts, sampling


@pytest.mark.parametrize(
    ("body", "key", "shown"),
    [
        ("limits = { rpm = inf }", "limits.rpm", "inf"),
        ("limits = { tpm = nan }", "limits.tpm", "nan"),
        ("timeout = inf", "timeout", "inf"),
        ("connect_timeout = nan", "connect_timeout", "nan"),
        ("deadline = 1e400", "deadline", "inf"),
        ("temperature = nan", "temperature", "nan"),
        ("top_p = nan", "top_p", "nan"),
        ('[models."openai/x".modes.fix]\ntemperature = nan', "modes.fix.temperature", "nan"),
    ],
)
def test_non_finite_numbers_are_refused(tmp_path, body, key, shown) -> None:
    path = write(tmp_path, model("openai/x", body))
    msg = config_error(path)
    assert msg == f"{path}: [models.\"openai/x\"] key '{key}': Input should be a finite number (got {shown})"


# --------------------------------------------------------------------------- encoding


def test_non_utf8_byte_names_file_line_and_offset(tmp_path) -> None:
    head = GOOD_MODEL.encode() + b"# caf"
    path = write(tmp_path, head + b"\xe9 au lait\n")
    msg = config_error(path)
    assert msg == (
        f"{path}: not valid UTF-8 at line 3, byte offset {len(head)} (byte 0xe9); save the file as UTF-8"
    )


def test_utf8_bom_is_accepted_and_not_counted_away(tmp_path) -> None:
    bom = b"\xef\xbb\xbf"
    assert load_config(write(tmp_path, bom + GOOD_MODEL.encode())).default_model == "baseline/rules"
    path = write(tmp_path, bom + b"# ok\n# \xff\n" + GOOD_MODEL.encode(), "bad.toml")
    assert "line 2, byte offset 10 (byte 0xff)" in config_error(path)  # offsets count the BOM's 3 bytes


def test_deeply_nested_toml_is_a_config_error(tmp_path) -> None:
    path = write(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n" + GOOD_MODEL)
    msg = config_error(path)
    assert str(path) in msg and "nested too deeply" in msg


# --------------------------------------------------------------------------- [defaults]


def test_defaults_not_a_table(tmp_path) -> None:
    path = write(tmp_path, 'defaults = "x"\n' + GOOD_MODEL)
    msg = config_error(path)
    assert msg.startswith(f"{path}: [defaults] must be a table (got a string)")
    assert "\n" not in msg


@pytest.mark.parametrize(("value", "kind"), [("3", "an integer"), ('["baseline/rules"]', "a list")])
def test_defaults_model_of_the_wrong_type(tmp_path, value, kind) -> None:
    path = write(tmp_path, f"[defaults]\nmodel = {value}\n" + GOOD_MODEL)
    msg = config_error(path)
    assert (
        msg == f"{path}: [defaults] key 'model': must be a model id such as \"baseline/rules\" (got {kind})"
    )


def test_unknown_key_under_defaults(tmp_path) -> None:
    path = write(tmp_path, '[defaults]\nmodel = "baseline/rules"\nmodle = "x"\n' + GOOD_MODEL)
    assert config_error(path) == f"{path}: [defaults] key 'modle': unknown key (known: model)"


# --------------------------------------------------------------------------- lists of model ids


def test_fallbacks_string_in_a_model_table_reported_once(tmp_path) -> None:
    path = write(tmp_path, model("openai/x", 'fallbacks = "baseline/rules"'))
    msg = config_error(path)
    assert msg == (
        f"{path}: [models.\"openai/x\"] key 'fallbacks': must be a list of model ids such as "
        '["baseline/rules"] (got a string)'
    )


def test_fallbacks_with_a_non_string_is_named(tmp_path) -> None:
    path = write(tmp_path, model("openai/x", 'fallbacks = ["baseline/rules", 3]'))
    msg = config_error(path)
    assert "key 'fallbacks': must be a list of model ids" in msg and "(got a list holding an integer)" in msg
    assert msg.count("\n") == 0


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('primary = "baseline/rules"\nfallbacks = "baseline/rules"', "fallbacks"),
        ('cascade = { models = "baseline/rules" }', "cascade.models"),
    ],
)
def test_string_for_a_list_in_routing_reported_once(tmp_path, table, key) -> None:
    path = write(tmp_path, GOOD_MODEL + f"[routing.classify]\n{table}\n")
    msg = config_error(path)
    assert msg == (
        f"{path}: [routing.classify] key '{key}': must be a list of model ids such as "
        '["baseline/rules"] (got a string)'
    )


def test_unhashable_ids_in_routing_do_not_crash(tmp_path) -> None:
    path = write(
        tmp_path, GOOD_MODEL + '[routing.fix]\nprimary = ["baseline/rules"]\nfallbacks = [{ a = 1 }]\n'
    )
    msg = config_error(path)
    assert "[routing.fix] key 'primary': must be a model id" in msg and "(got a list)" in msg
    assert "[routing.fix] key 'fallbacks'" in msg and "(got a list holding a table)" in msg


# --------------------------------------------------------------------------- [routing]


def test_routing_mode_given_as_a_string(tmp_path) -> None:
    path = write(tmp_path, GOOD_MODEL + '[routing]\nclassify = "m"\n')
    msg = config_error(path)
    assert msg == (
        f"{path}: [routing] key 'classify': must be a table (got a string); write [routing.classify] "
        'and below it primary = "m"'
    )


def test_routing_not_a_table(tmp_path) -> None:
    path = write(tmp_path, "routing = 3\n" + GOOD_MODEL)
    msg = config_error(path)
    assert msg.startswith(f"{path}: [routing] must be a table of [routing.<mode>] tables (got an integer)")


def test_routing_entry_without_primary_or_cascade(tmp_path) -> None:
    path = write(tmp_path, GOOD_MODEL + '[routing.fix]\nnote = "decide later"\n')
    assert "[routing.fix]: needs primary" in config_error(path)


def test_bad_cascade_threshold(tmp_path) -> None:
    path = write(
        tmp_path, GOOD_MODEL + '[routing.fix.cascade]\nmodels = ["baseline/rules"]\nthreshold = nan\n'
    )
    assert "[routing.fix] key 'cascade.threshold': must be a number from 0 to 1 (got nan)" in config_error(
        path
    )


def test_valid_routing_entries_are_kept() -> None:
    """What routing.routing_entry writes (provenance, ci, date, a cascade) and hand-written notes load."""
    models = {"baseline/rules": {}, "openai/a": {}, "openai/b": {}}
    sel = Selection(
        mode="classify",
        model="openai/a",
        fallbacks=["baseline/rules"],
        objective="quality",
        reason="best mean",
        score=0.9,
        ci=(0.8, 0.95),
        cost_per_issue=0.0012,
        latency_p50=1.0,
        n=40,
        cascade={"models": ["openai/b", "openai/a"], "threshold": 0.5},
    )
    prov = {"run_id": "r1", "dataset": "d", "split": "dev", "date": date(2026, 1, 2)}
    routing = {
        "classify": routing_entry(sel, prov),
        "fix": {"cascade": {"models": ["openai/b", "openai/a"], "threshold": 1}, "note": "by hand"},
        "explain": routing_entry({"primary": "openai/b"}),
        "summarize": {"primary": "openai/a", "fallbacks": [], "reason": "cheap", "n": 3},
    }
    cfg = config_from_dict({"models": models, "routing": routing}, Path("t.toml"))
    assert cfg.routing == routing


def test_project_config_still_loads(project_config) -> None:
    assert "openai/gpt-4.1-mini" in load_config(project_config).models


# --------------------------------------------------------------------------- per-provider sampling


def test_sampling_problems_messages() -> None:
    assert sampling_problems("anthropic", {"temperature": 1.5}) == [
        "temperature 1.5 is outside what anthropic accepts (0 to 1)"
    ]
    assert sampling_problems("cohere", {"seed": -1, "temperature": 1.01}) == [
        "temperature 1.01 is outside what cohere accepts (0 to 1)",
        "seed -1 is outside what cohere accepts (0 to 18446744073709551615)",
    ]
    assert sampling_problems("gemini", {"seed": 2**31}) == [
        "seed 2147483648 is outside what gemini accepts (-2147483648 to 2147483647)"
    ]
    assert sampling_problems("openai", {"temperature": math.nan, "top_p": "high", "seed": 1.5}) == [
        "temperature must be a finite number (got nan)",
        "top_p must be a number (got 'high')",
        "seed must be a whole number (got 1.5)",
    ]
    assert sampling_problems("openai", {"temperature": True, "max_tokens": 0}) == [
        "temperature must be a number (got True)",
        "max_tokens must be at least 1 (got 0)",
    ]


@pytest.mark.parametrize("provider", sorted(SAMPLING_RANGES))
def test_values_every_provider_takes(provider) -> None:
    ok = {"temperature": 0.0, "top_p": 1.0, "seed": 0, "max_tokens": 1, "stop": "ignored"}
    assert sampling_problems(provider, ok) == []
    assert sampling_problems(provider, {"temperature": None, "top_p": None, "seed": None}) == []
    assert sampling_problems(provider, {"temperature": 2.5}) != []  # no provider takes more than 2
    assert SAMPLING_RANGES[provider].source


def test_unknown_provider_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="acme"):
        sampling_problems("acme", {})


def test_check_call_params_refuses_before_sending() -> None:
    cfg = config_from_dict({"models": {"anthropic/h": {"temperature": 0.2}}}, Path("t.toml"))
    spec = cfg.model_spec("anthropic/h")
    check_call_params(spec, {"temperature": 1.0, "top_p": 0.5, "max_tokens": 10})
    with pytest.raises(BadRequestError) as info:
        check_call_params(spec, {"temperature": 1.7, "top_p": 2})
    exc = info.value
    assert exc.provider == "anthropic" and exc.model == "anthropic/h" and not exc.retryable
    assert exc.detail == (
        "temperature 1.7 is outside what anthropic accepts (0 to 1); "
        "top_p 2 is outside what anthropic accepts (0 to 1); not sent"
    )


@pytest.mark.parametrize(
    ("model_id", "body", "key", "problem"),
    [
        (
            "anthropic/h",
            "temperature = 1.5",
            "temperature",
            "temperature 1.5 is outside what anthropic accepts",
        ),
        ("cohere/c", "temperature = 1.2", "temperature", "temperature 1.2 is outside what cohere accepts"),
        ("cohere/c", "seed = -1", "seed", "seed -1 is outside what cohere accepts"),
        ("gemini/g", "seed = 4294967296", "seed", "seed 4294967296 is outside what gemini accepts"),
        (
            "anthropic/h",
            '[models."anthropic/h".modes.explain]\ntemperature = 1.2',
            "modes.explain.temperature",
            "temperature 1.2 is outside what anthropic accepts",
        ),
        (
            "cohere/c",
            '[models."cohere/c".modes.fix]\nseed = -5',
            "modes.fix.seed",
            "seed -5 is outside what cohere accepts",
        ),
    ],
)
def test_provider_ranges_checked_in_the_config(tmp_path, model_id, body, key, problem) -> None:
    path = write(tmp_path, model(model_id, body))
    msg = config_error(path)
    assert msg.startswith(f"{path}: [models.\"{model_id}\"] key '{key}': {problem}"), msg
    assert "\n" not in msg


def test_in_range_values_for_strict_providers_load(tmp_path) -> None:
    path = write(
        tmp_path,
        model("anthropic/h", "temperature = 1.0\ntop_p = 1.0\nseed = 7")
        + '[models."cohere/c"]\ntemperature = 1\ntop_p = 1.0\nseed = 0\n'
        + '[models."openai/o"]\ntemperature = 2.0\n',
    )
    cfg = load_config(path)
    assert cfg.model_spec("anthropic/h").temperature == 1.0 and cfg.model_spec("openai/o").temperature == 2.0


def test_every_problem_of_a_file_reported_at_once(tmp_path) -> None:
    text = (
        "[defaults]\nmodel = 3\n"
        + model("anthropic/h", "temperature = 1.5\nprice = { input = nan, output = 1 }\ntimeout = inf")
        + '[models."openai/x"]\nfallbacks = "baseline/rules"\n'
        + '[routing]\nclassify = "baseline/rules"\n'
    )
    path = write(tmp_path, text)
    lines = config_error(path).splitlines()
    assert len(lines) == 6, lines
    assert all(line.startswith(f"{path}: ") for line in lines)
    joined = "\n".join(lines)
    for key in ("'model'", "'temperature'", "'price.input'", "'timeout'", "'fallbacks'", "'classify'"):
        assert key in joined


def test_config_import_loads_no_provider_adapter() -> None:
    """The registry and the sampling table load with the config; no adapter module does."""
    code = (
        "import sys, orchestrator.config; "
        "print(sorted(m for m in sys.modules if m.startswith('orchestrator.providers.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['orchestrator.providers.registry', 'orchestrator.providers.sampling']"


# --------------------------------------------------------------------------- ranges against the specs


def _request(provider: str, params: dict[str, Any]):
    from orchestrator.config import ModelSpec
    from orchestrator.providers.base import ChatRequest
    from orchestrator.types import Message

    spec = ModelSpec(id=f"{provider}/m", provider=provider, model="m")
    messages = [Message(role="system", content="be brief"), Message(role="user", content="hi")]
    return ChatRequest(spec=spec, messages=messages, params={"max_tokens": 16, **params})


SPEC_PROVIDERS = ["openai", "openrouter", "anthropic", "cohere", "gemini", "ollama"]


@pytest.mark.parametrize("provider", SPEC_PROVIDERS)
def test_range_edges_are_valid_requests_in_the_spec(provider) -> None:
    from helpers.spec_validation import validate_request

    from orchestrator.providers import get_adapter

    ranges = SAMPLING_RANGES[provider]
    checked = 0
    for name in ("temperature", "top_p", "seed"):
        bounds = getattr(ranges, name)
        for edge in bounds or ():
            body = get_adapter(provider).body(_request(provider, {name: edge}))
            validate_request(provider, body)
            checked += 1
    assert checked >= 4


@pytest.mark.parametrize(
    ("provider", "name", "value"),
    [
        ("anthropic", "temperature", 1.01),
        ("anthropic", "top_p", 1.01),
        ("cohere", "temperature", 1.01),
        ("cohere", "seed", -1),
        ("openai", "temperature", 2.01),
        ("openai", "top_p", 1.01),
        ("openai", "temperature", -0.01),
    ],
)
def test_just_outside_the_table_the_spec_refuses_too(provider, name, value) -> None:
    import jsonschema
    from helpers.spec_validation import validate_request

    from orchestrator.providers import get_adapter

    body = get_adapter(provider).body(_request(provider, {name: value}))
    with pytest.raises(jsonschema.ValidationError):
        validate_request(provider, body)
    assert sampling_problems(provider, {name: value})


def test_ranges_stated_only_in_prose() -> None:
    from helpers.spec_validation import contract_schema

    gemini = contract_schema("gemini", "GenerationConfig")["properties"]
    assert "[0.0, 2.0]" in gemini["temperature"]["description"]
    assert SAMPLING_RANGES["gemini"].temperature == (0.0, 2.0)
    assert gemini["seed"]["format"] == "int32"
    assert SAMPLING_RANGES["gemini"].seed == (-(2**31), 2**31 - 1)
    assert "seed" not in contract_schema("anthropic", "CreateMessageParams")["properties"]
    assert SAMPLING_RANGES["anthropic"].seed is None


def test_cohere_adapter_keeps_clamping_p() -> None:
    from orchestrator.providers import get_adapter

    adapter = get_adapter("cohere")
    assert adapter.body(_request("cohere", {"top_p": 1.0}))["p"] == 0.99
    assert adapter.body(_request("cohere", {"top_p": 0.0}))["p"] == 0.01


# --------------------------------------------------------------------------- the CLI


CLI_CASES: dict[str, tuple[str | bytes, str]] = {
    "price-nan": (model("openai/x", "price = { input = nan, output = 1 }"), "key 'price.input'"),
    "price-inf": (model("openai/x", "price = { input = 1, output = inf }"), "key 'price.output'"),
    "price-1e400": (
        model("openai/x", "price = { input = 1, output = 1, cache_read = 1e400 }"),
        "key 'price.cache_read'",
    ),
    "price-absurd": (model("openai/x", "price = { input = 50000, output = 1 }"), "key 'price.input'"),
    "limits-inf": (model("openai/x", "limits = { rpm = inf }"), "key 'limits.rpm'"),
    "timeout-nan": (model("openai/x", "timeout = nan"), "key 'timeout'"),
    "deadline-inf": (model("openai/x", "deadline = inf"), "key 'deadline'"),
    "temperature-nan": (model("openai/x", "temperature = nan"), "key 'temperature'"),
    "latin1": (GOOD_MODEL.encode() + b"# caf\xe9\n", "line 3, byte offset"),
    "defaults-string": ('defaults = "x"\n' + GOOD_MODEL, "[defaults] must be a table"),
    "defaults-model-int": ("[defaults]\nmodel = 3\n" + GOOD_MODEL, "[defaults] key 'model'"),
    "defaults-unknown-key": (
        '[defaults]\nmodell = "baseline/rules"\n' + GOOD_MODEL,
        "[defaults] key 'modell'",
    ),
    "model-fallbacks-string": (model("openai/x", 'fallbacks = "baseline/rules"'), "key 'fallbacks'"),
    "routing-fallbacks-string": (
        GOOD_MODEL + '[routing.fix]\nprimary = "baseline/rules"\nfallbacks = "baseline/rules"\n',
        "[routing.fix] key 'fallbacks'",
    ),
    "cascade-models-string": (
        GOOD_MODEL + '[routing.fix.cascade]\nmodels = "baseline/rules"\n',
        "[routing.fix] key 'cascade.models'",
    ),
    "routing-mode-string": (GOOD_MODEL + '[routing]\nclassify = "m"\n', "[routing] key 'classify'"),
    "routing-int": ("routing = 3\n" + GOOD_MODEL, "[routing] must be a table"),
    "anthropic-temperature": (model("anthropic/h", "temperature = 1.5"), "key 'temperature'"),
    "cohere-seed": (model("cohere/c", "seed = -1"), "key 'seed'"),
    "mode-override": (
        model("anthropic/h", '[models."anthropic/h".modes.explain]\ntemperature = 1.2'),
        "key 'modes.explain.temperature'",
    ),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_exits_2_naming_file_and_key(tmp_path, case) -> None:
    text, needle = CLI_CASES[case]
    bad = write(tmp_path, text)
    env = {k: v for k, v in os.environ.items() if k not in ("ORCHESTRATOR_CONFIG", "ORCHESTRATOR_DEBUG")}
    env["ORCHESTRATOR_HOME"] = str(tmp_path / "home")
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "--config", str(bad), "models"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("orchestrator: error: "), proc.stderr
    assert str(bad) in proc.stderr and needle in proc.stderr, proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        ("{ slots = 0 }", "'options.slots': a whole number from 1 to 16, got 0"),
        ('{ slots = "2" }', "'options.slots': a whole number from 1 to 16, got '2'"),
        (
            "{ sampling = { repeat_penalty = -1.0 } }",
            "'options.sampling.repeat_penalty': float >= 0.0, got -1.0",
        ),
        ("{ sampling = { min_p = 2 } }", "'options.sampling.min_p': float in [0.0, 1.0], got 2"),
        ("{ sampling = { top_k = 2.5 } }", "'options.sampling.top_k': int >= 0, got 2.5"),
        ("{ sampling = { dry_mult = 0.8 } }", "'options.sampling.dry_mult': not a llama.cpp sampling field"),
        ('{ sampling = { stop = "\\n" } }', "'options.sampling.stop': a list of non-empty strings"),
        ("{ sampling = 3 }", "'options.sampling': a table of llama.cpp sampling fields, got 3"),
    ],
)
def test_the_embedded_models_slots_and_sampling_are_checked_on_load(tmp_path, options, shown) -> None:
    path = write(tmp_path, f'[models."local/x"]\nprovider = "local"\noptions = {options}\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f'[models."local/x"] key {shown}' in str(info.value)


def test_the_shipped_embedded_settings_load_and_reach_the_request(tmp_path) -> None:
    from orchestrator.providers.base import ChatRequest
    from orchestrator.providers.local import ADAPTER
    from orchestrator.types import Message

    for config in (ROOT / "orchestrator.toml", ROOT / "orchestrator" / "default.toml"):
        spec = load_config(config).model_spec("local/smollm2")
        req = ChatRequest(spec=spec, messages=[Message(role="user", content="hi")], params={"max_tokens": 8})
        body = ADAPTER.body(req)
        assert body["repeat_penalty"] == 1.1 and body["dry_multiplier"] == 0.8, config
        assert spec.options["slots"] == 1 and spec.params_for("classify")["max_tokens"] == 96
