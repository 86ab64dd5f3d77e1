"""Types (Usage, Completion, Issue), the config file and its errors, parameter precedence, prompt modes."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.client import LLMClient
from orchestrator.client.call import call_params
from orchestrator.config import config_from_dict, find_config_path, load_config
from orchestrator.errors import ConfigError, UnknownModelError
from orchestrator.modes import (
    CLASSIFY_SCHEMA,
    MAX_BODY_CHARS,
    MODES,
    Mode,
    get_mode,
    parse_structured,
)
from orchestrator.types import Comment, Completion, Issue, Usage

# --------------------------------------------------------------------------- Usage


def test_usage_axes_and_derived_totals() -> None:
    u = Usage(input_uncached=100, cache_read=50, cache_write=25, output=40, reasoning=10)
    assert u.input_total == 175
    assert u.output_total == 50
    assert Usage().input_total == 0 and Usage().output_total == 0


def test_usage_addition_sums_each_axis() -> None:
    a = Usage(input_uncached=1, cache_read=2, cache_write=3, output=4, reasoning=5, raw={"x": 1})
    b = Usage(input_uncached=10, cache_read=20, cache_write=30, output=40, reasoning=50)
    s = a + b
    assert (s.input_uncached, s.cache_read, s.cache_write, s.output, s.reasoning) == (11, 22, 33, 44, 55)
    assert s.input_total == 66 and s.output_total == 99


def test_usage_json_round_trip_keeps_axes_and_raw() -> None:
    u = Usage(
        input_uncached=7, cache_read=3, output=5, reasoning=2, raw={"prompt_tokens": 10, "nested": {"a": 1}}
    )
    data = json.loads(u.model_dump_json())
    assert data["input_total"] == 10 and data["output_total"] == 7  # derived totals are in the JSON
    back = Usage.model_validate_json(u.model_dump_json())
    assert back == u
    assert back.input_total == 10 and back.output_total == 7


# --------------------------------------------------------------------------- Completion


def make_completion(**kw) -> Completion:
    base = dict(
        text='{"type": "bug"}',
        model="openai/gpt-4.1-mini",
        served_model="gpt-4.1-mini-2025-04-14",
        provider="openai",
        usage=Usage(input_uncached=10, cache_read=5, output=3, reasoning=1),
        cost_usd=0.000123,
        latency_s=0.42,
        finish_reason="stop",
        attempts=2,
        request_id="chatcmpl-xyz",
        mode="classify",
        parsed={"type": "bug"},
        fallback_path=["openai/gpt-4.1-mini"],
        raw={"id": "chatcmpl-xyz", "secret_looking_payload": "RAW-BODY-MARKER"},
    )
    base.update(kw)
    return Completion(**base)


def test_completion_json_round_trip() -> None:
    c = make_completion()
    back = Completion.model_validate_json(c.model_dump_json())
    assert back == c
    assert back.usage.input_total == 15
    assert back.raw == c.raw


def test_completion_raw_not_in_repr() -> None:
    c = make_completion()
    assert "RAW-BODY-MARKER" not in repr(c)
    assert "secret_looking_payload" not in repr(c)
    assert "RAW-BODY-MARKER" not in str(c)
    assert "served_model" in repr(c)


def test_completion_unknown_cost_is_none_not_zero() -> None:
    c = Completion(text="x", model="m/x", provider="cohere")
    assert c.cost_usd is None
    assert json.loads(c.model_dump_json())["cost_usd"] is None


# --------------------------------------------------------------------------- Issue


def test_issue_id_derived_from_repo_and_number() -> None:
    issue = Issue(repo="acme/widgets", number=12, title="t")
    assert issue.id == "acme/widgets#12"
    assert Issue(repo="acme/widgets", number=12, title="t", id="custom-1").id == "custom-1"
    assert Issue(title="no repo").id == ""
    assert Issue(repo="acme/widgets", title="no number").id == ""
    assert Issue(repo="a/b", number=0, title="zero").id == "a/b#0"


def test_issue_json_round_trip_with_gold_and_comments() -> None:
    issue = Issue(
        repo="acme/widgets",
        number=3,
        title="Crash",
        body="boom",
        labels=["bug"],
        comments=[Comment(author="ann", body="same here")],
        gold={"type": "bug", "severity": "high"},
        split="dev",
    )
    back = Issue.model_validate_json(issue.model_dump_json())
    assert back == issue and back.id == "acme/widgets#3"
    assert back.gold.type == "bug" and back.comments[0].author == "ann"


# --------------------------------------------------------------------------- config errors


GOOD_MODEL = '[models."baseline/rules"]\nprovider = "baseline"\n'


def write(tmp_path: Path, text: str, name: str = "orchestrator.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_bad_toml_names_file_and_line(tmp_path) -> None:
    path = write(tmp_path, GOOD_MODEL + 'temperature = 0.2\n\n[models."x/y"\nprovider = "openai"\n')
    msg = config_error(path)
    assert str(path) in msg
    assert re.search(r"line 5\b", msg), msg
    assert "\n" not in msg


def test_unknown_provider_names_model_and_key(tmp_path) -> None:
    path = write(tmp_path, GOOD_MODEL + '[models."acme/big"]\nprovider = "acmeai"\n')
    msg = config_error(path)
    assert str(path) in msg and "acme/big" in msg and "'provider'" in msg and "acmeai" in msg
    assert "\n" not in msg


def test_price_not_a_number_names_model_and_key(tmp_path) -> None:
    path = write(
        tmp_path,
        GOOD_MODEL + '[models."openai/x"]\nprovider = "openai"\nprice = { input = "cheap", output = 1.0 }\n',
    )
    msg = config_error(path)
    assert str(path) in msg and "openai/x" in msg and "price.input" in msg and "cheap" in msg
    assert "\n" not in msg


def test_unknown_mode_override_names_model_and_mode(tmp_path) -> None:
    path = write(
        tmp_path,
        GOOD_MODEL + '[models."openai/x"]\nprovider = "openai"\n[models."openai/x".modes.translate]\n'
        "temperature = 0.3\n",
    )
    msg = config_error(path)
    assert str(path) in msg and "openai/x" in msg and "translate" in msg and "modes" in msg
    assert "\n" not in msg


def test_unknown_fallback_names_model_and_id(tmp_path) -> None:
    path = write(
        tmp_path,
        GOOD_MODEL
        + '[models."openai/x"]\nprovider = "openai"\nfallbacks = ["baseline/rules", "nope/missing"]\n',
    )
    msg = config_error(path)
    assert str(path) in msg and "openai/x" in msg and "fallbacks" in msg and "nope/missing" in msg
    assert "baseline/rules'" not in msg  # only the bad id is reported
    assert "\n" not in msg


def test_unknown_model_in_routing_is_a_config_error(tmp_path) -> None:
    path = write(
        tmp_path,
        GOOD_MODEL + '[routing]\nclassify = { primary = "nope/x", fallbacks = ["baseline/rules"] }\n',
    )
    msg = config_error(path)
    assert str(path) in msg and "routing" in msg and "nope/x" in msg


def test_unknown_key_in_model_table_is_named(tmp_path) -> None:
    path = write(tmp_path, GOOD_MODEL + '[models."openai/x"]\nprovider = "openai"\ntemprature = 0.2\n')
    msg = config_error(path)
    assert "openai/x" in msg and "temprature" in msg


def test_several_problems_reported_together(tmp_path) -> None:
    path = write(
        tmp_path,
        GOOD_MODEL + '[models."a/x"]\nprovider = "nope"\n[models."openai/y"]\nprovider = "openai"\n'
        "max_tokens = -3\n",
    )
    msg = config_error(path)
    assert "a/x" in msg and "openai/y" in msg and "max_tokens" in msg


def test_unknown_model_id_lists_known_ones(project_config) -> None:
    cfg = load_config(project_config)
    with pytest.raises(UnknownModelError) as info:
        cfg.model_spec("openai/gpt-99")
    msg = str(info.value)
    assert "openai/gpt-99" in msg
    for model_id in cfg.models:
        assert model_id in msg
    assert isinstance(info.value, KeyError)


# --------------------------------------------------------------------------- where the config comes from


def test_explicit_path_beats_env_and_env_beats_cwd(tmp_path, monkeypatch) -> None:
    a = write(tmp_path, GOOD_MODEL, "a.toml")
    b = write(tmp_path, GOOD_MODEL, "b.toml")
    cwd = tmp_path / "project" / "sub"
    cwd.mkdir(parents=True)
    local = write(tmp_path / "project", GOOD_MODEL)
    monkeypatch.chdir(cwd)

    monkeypatch.delenv("ORCHESTRATOR_CONFIG", raising=False)
    assert find_config_path() == local.resolve()  # found in a parent folder
    assert load_config().path == local.resolve()

    monkeypatch.setenv("ORCHESTRATOR_CONFIG", str(a))
    assert find_config_path() == a.resolve()
    assert load_config().path == a.resolve()
    assert find_config_path(b) == b.resolve()
    assert load_config(b).path == b.resolve()


def test_missing_config_files_are_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="ORCHESTRATOR_CONFIG"):
        find_config_path()
    with pytest.raises(ConfigError, match="nowhere.toml"):
        find_config_path(tmp_path / "nowhere.toml")


def test_shipped_default_when_nothing_else(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ORCHESTRATOR_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    path = find_config_path()
    if path.name != "default.toml":  # an orchestrator.toml above the temp folder would win
        pytest.skip(f"an orchestrator.toml exists above {tmp_path}: {path}")
    monkeypatch.delenv("ORCHESTRATOR_HOME", raising=False)
    cfg = load_config()
    assert cfg.home == tmp_path / ".orchestrator"  # the shipped default: beside the working directory
    assert cfg.default_model == "local/smollm2"
    assert {"local/smollm2", "baseline/rules"} <= set(cfg.models)


def test_home_defaults_beside_the_config_file(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ORCHESTRATOR_HOME", raising=False)
    path = write(tmp_path, GOOD_MODEL, "my.toml")
    assert load_config(path).home == tmp_path / ".orchestrator"
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "elsewhere"))
    assert load_config(path).home == tmp_path / "elsewhere"


# --------------------------------------------------------------------------- parameters


def test_project_per_mode_overrides(project_config) -> None:
    spec = load_config(project_config).model_spec("local/smollm2-creative")
    assert spec.temperature == 0.8
    assert spec.params_for("explain")["temperature"] == 0.9
    assert spec.params_for("fix")["temperature"] == 0.0
    assert spec.params_for("summarize")["temperature"] == 0.8
    assert spec.params_for(None)["temperature"] == 0.8


def precedence_client() -> LLMClient:
    raw = {
        "models": {
            "openai/plain": {"provider": "openai", "max_tokens": 300},
            "openai/tuned": {
                "provider": "openai",
                "temperature": 0.3,
                "top_p": 0.8,
                "max_tokens": 400,
                "seed": 5,
                "modes": {"explain": {"temperature": 0.9, "max_tokens": 100}},
            },
        }
    }
    return LLMClient(config_from_dict(raw, Path("test.toml")), cache=False)


def test_params_precedence_mode_defaults_model_override_kwargs() -> None:
    client = precedence_client()
    plain = client.config.model_spec("openai/plain")
    tuned = client.config.model_spec("openai/tuned")
    explain, summarize = get_mode("explain"), get_mode("summarize")
    # 1. mode defaults where the model says nothing
    assert call_params(plain, explain, {})["temperature"] == explain.defaults["temperature"]
    assert call_params(plain, None, {}).get("temperature") is None
    assert call_params(plain, explain, {})["max_tokens"] == 300
    # 2. model config beats mode defaults
    assert call_params(tuned, summarize, {})["temperature"] == 0.3
    assert call_params(tuned, summarize, {})["max_tokens"] == 400
    # 3. per-mode override beats the model config
    p = call_params(tuned, explain, {})
    assert (p["temperature"], p["max_tokens"], p["top_p"], p["seed"]) == (0.9, 100, 0.8, 5)
    # 4. call kwargs beat everything; None means "not given"
    p = call_params(tuned, explain, {"temperature": 0.05, "max_tokens": 7, "seed": None})
    assert (p["temperature"], p["max_tokens"], p["seed"]) == (0.05, 7, 5)
    assert call_params(tuned, None, {"temperature": 0.0})["temperature"] == 0.0


def test_unknown_call_parameter_is_refused() -> None:
    client = precedence_client()
    with pytest.raises(TypeError, match="temprature"):
        client.complete_sync("hi", model="openai/plain", temprature=0.1)


# --------------------------------------------------------------------------- modes


ISSUE = Issue(
    repo="acme/widgets",
    number=7,
    title="Saving fails with KeyError",
    body="Open a project and press save.\nKeyError: 'files'",
    labels=["bug", "storage"],
    comments=[Comment(author="bob", body="Seeing this on 2.1 too"), Comment(body="anonymous note")],
)


@pytest.mark.parametrize("name", ["explain", "fix", "classify", "summarize"])
def test_each_mode_renders_an_issue(name) -> None:
    mode = MODES[name]
    assert mode.system_prompt.strip()
    system, user = mode.messages(ISSUE)
    assert (system.role, user.role) == ("system", "user")
    assert system.content == mode.system_prompt
    for part in (
        "acme/widgets",
        "7",
        ISSUE.title,
        "KeyError: 'files'",
        "bug, storage",
        "bob",
        "Seeing this on 2.1 too",
        "anonymous note",
    ):
        assert part in user.content, part
    assert re.fullmatch(r"[0-9a-f]{12}", mode.version)
    assert mode.version == MODES[name].version


def test_modes_render_free_text_and_empty_fields() -> None:
    _, user = get_mode("summarize").messages("just a body of text")
    assert "just a body of text" in user.content
    _, user = get_mode("explain").messages(Issue(title="Only a title"))
    assert "Only a title" in user.content and "(no description)" in user.content
    assert "(no comments)" in user.content and "(none)" in user.content


def test_long_bodies_are_clipped_with_a_marker() -> None:
    body = "HEAD-MARK " + "x" * (MAX_BODY_CHARS * 3) + " TAIL-MARK"
    _, user = get_mode("explain").messages(Issue(title="long", body=body))
    assert "characters cut" in user.content
    assert "HEAD-MARK" in user.content and "TAIL-MARK" in user.content
    assert len(user.content) < MAX_BODY_CHARS + 1000
    long_comment = Issue(title="t", comments=[Comment(author="a", body="c" * 5000 + "END")])
    _, user = get_mode("explain").messages(long_comment)
    assert "characters cut" in user.content and "END" in user.content


def test_unknown_mode_lists_known() -> None:
    with pytest.raises(ValueError, match="explain"):
        get_mode("translate")


def test_version_changes_with_the_prompt_and_is_stable_across_processes() -> None:
    """A mode made in code hashes its prompt; the shipped tasks' versions are checked against their files
    in tests/tasks/test_builtin_tasks.py."""
    explain = Mode(
        name="mine", system_prompt="Explain.", user_template="{title}", defaults={"temperature": 0.7}
    )
    assert dataclasses.replace(explain, system_prompt=explain.system_prompt + " ").version != explain.version
    assert dataclasses.replace(explain, user_template=explain.user_template + "!").version != explain.version
    assert dataclasses.replace(explain, defaults={"temperature": 0.1}).version != explain.version
    schema = {**CLASSIFY_SCHEMA, "required": ["type"]}
    assert dataclasses.replace(explain, schema=CLASSIFY_SCHEMA).version != explain.version
    assert (
        dataclasses.replace(explain, schema=schema).version
        != dataclasses.replace(explain, schema=CLASSIFY_SCHEMA).version
    )
    assert len({m.version for m in MODES.values()}) == len(MODES) >= 4
    code = "import json; from orchestrator.modes import MODES; print(json.dumps({k: m.version for k, m in MODES.items()}))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    ).stdout
    assert json.loads(out) == {k: m.version for k, m in MODES.items()}


# --------------------------------------------------------------------------- parse_structured


VALID = {"type": "bug", "component": "storage", "severity": "high"}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(VALID),
        "```json\n" + json.dumps(VALID, indent=2) + "\n```",
        "```\n" + json.dumps(VALID) + "\n```",
        "Here is the label:\n" + json.dumps(VALID) + "\nHope this helps.",
        "Sure!\n```json\n" + json.dumps(VALID) + "\n```\nDone.",
        "  \n" + json.dumps(VALID) + "  \n",
    ],
    ids=["plain", "fenced-json", "fenced", "prose-around", "prose-and-fence", "whitespace"],
)
def test_parse_structured_accepts(text) -> None:
    parsed, error = parse_structured(text, CLASSIFY_SCHEMA)
    assert error is None
    assert parsed == VALID


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "no JSON"),
        ("I think it is a bug.", "no JSON"),
        ('{"type": "bug", "component": "x", "severity": }', "invalid JSON"),
        ("{'type': 'bug'}", "invalid JSON"),
        ('{"type": "bug", "component": "x"}', "severity"),
        ('{"type": "regression", "component": "x", "severity": "low"}', "type"),
        ('{"type": "bug", "component": "x", "severity": "urgent"}', "severity"),
        ('{"type": "bug", "component": 3, "severity": "low"}', "component"),
        ('{"type": "bug", "component": "x", "severity": "low", "extra": 1}', "extra"),
        ("}{", "no JSON"),
        ("```", "no JSON"),
        ('[{"type": "bug"}]', "missing field"),
    ],
)
def test_parse_structured_rejects_with_a_message(text, needle) -> None:
    parsed, error = parse_structured(text, CLASSIFY_SCHEMA)
    assert parsed is None
    assert isinstance(error, str) and needle in error


def test_parse_structured_never_raises_on_odd_input() -> None:
    odd = ["{" * 50, "}" * 50, "\x00{\x00}", "```json", '{"type": NaN}', "{1: 2}", "[" * 5000 + "{}"]
    for text in odd:
        parsed, error = parse_structured(text, CLASSIFY_SCHEMA)
        assert parsed is None and isinstance(error, str)


def test_parse_structured_never_raises_on_deep_nesting() -> None:
    parsed, error = parse_structured('{"a": ' * 1000 + "}", CLASSIFY_SCHEMA)
    assert parsed is None and isinstance(error, str)
