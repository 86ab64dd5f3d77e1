"""The generic scorers (contains, regex, json_field): parameters, gold fields by name, and honest no-gold."""

from __future__ import annotations

import pytest

from orchestrator.errors import ConfigError
from orchestrator.scoring import check_params, get_scorer, score_contains, score_json_field, score_regex
from orchestrator.tasks import load_task
from orchestrator.types import Gold

GOLD = Gold(priority="p1", key_points=["mount loops", "redirect_slashes"], summary="Loops forever.")


def test_contains_reads_any_gold_field_and_scores_a_list_as_a_share():
    assert score_contains(GOLD, "This is P1 urgent", None, None, field="priority").value == 1.0
    assert (
        score_contains(GOLD, "This is P1 urgent", None, None, field="priority", ignore_case=False).value
        == 0.0
    )
    half = score_contains(GOLD, "the mount loops here", None, None, field="key_points")
    assert half.value == 0.5 and half.details["found"] == ["mount loops"]
    assert score_contains(GOLD, "x", None, None, text="X").value == 1.0
    missing = score_contains(GOLD, "x", None, None, field="component")
    assert missing.value is None and missing.flagged == "no_gold"  # absent gold is unscored, never 0


def test_regex_uses_the_given_pattern_or_the_gold_value_as_one():
    assert score_regex(GOLD, "see PR #123", None, None, pattern=r"#\d+").value == 1.0
    assert score_regex(GOLD, "see PR", None, None, pattern=r"#\d+").value == 0.0
    assert score_regex(Gold(pattern=r"^p[0-3]$"), "p2", None, None, field="pattern").value == 1.0
    bad_gold = score_regex(Gold(pattern="("), "p2", None, None, field="pattern")
    assert bad_gold.value is None and "not a regular expression" in bad_gold.details["reason"]


def test_json_field_compares_a_path_of_the_json_answer():
    assert score_json_field(GOLD, '{"label": "P1"}', None, None, field="priority").value == 1.0
    assert score_json_field(GOLD, '{"label": "p2"}', None, None, field="priority").value == 0.0
    nested = '```json\n{"triage": {"priority": "p1"}}\n```'
    assert score_json_field(GOLD, nested, None, None, path="triage.priority").value == 1.0
    broken = score_json_field(GOLD, "p1, I think", None, None, field="priority")
    assert broken.value == 0.0 and broken.flagged == "parse_error"
    assert score_json_field(Gold(), '{"label": "p1"}', None, None).flagged == "no_gold"


def test_parameters_are_checked_before_any_call():
    assert check_params("regex", {"pattern": "("})[0].startswith("scorer 'regex': pattern '(' is not")
    assert check_params("contains", {}) == ["scorer 'contains' needs 'field' (a gold field) or 'text'"]
    assert check_params("json_field", {"colour": 1}) == [
        "scorer 'json_field' takes no parameter 'colour' (it takes: path, field, value, ignore_case)"
    ]
    assert check_params("nope", {})[0].startswith("no scorer named 'nope'; known: ")
    assert get_scorer("contains") is score_contains


@pytest.mark.parametrize(
    ("scorer", "message"),
    [
        ('"nope"', r"priority\.toml: key 'scorer': no scorer named 'nope'; known: .*json_field"),
        ('{ name = "regex", pattern = "(" }', r"key 'scorer': scorer 'regex': pattern '\(' is not a regular"),
        ('{ name = "contains", colour = 1 }', r"key 'scorer': scorer 'contains' takes no parameter 'colour'"),
    ],
)
def test_a_task_naming_a_bad_scorer_fails_when_it_loads(tmp_path, scorer, message):
    path = tmp_path / "priority.toml"
    path.write_text(
        f'name = "priority"\nscorer = {scorer}\n[prompts.default]\nuser = "{{{{ issue.title }}}}"\n'
    )
    with pytest.raises(ConfigError, match=message):
        load_task(path)


def test_a_task_with_scorer_parameters_loads(tmp_path):
    path = tmp_path / "mentions.toml"
    path.write_text('scorer = { name = "contains", field = "key_points" }\n[prompts.default]\nuser = "x"\n')
    task = load_task(path)
    assert (task.name, task.scorer, task.scorer_params) == ("mentions", "contains", {"field": "key_points"})


def test_a_mode_gives_its_scorer_its_parameters(monkeypatch):
    import dataclasses

    from orchestrator import modes
    from orchestrator.scoring import score

    mode = dataclasses.replace(
        modes.get_mode("summarize"), scorer="contains", scorer_params={"field": "summary"}
    )
    monkeypatch.setitem(modes.MODES, "summarize", mode)
    assert score("summarize", GOLD, "It loops forever. Done.").value == 1.0
    assert score("summarize", GOLD, "It works.").value == 0.0
