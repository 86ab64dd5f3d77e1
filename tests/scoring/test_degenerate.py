"""orchestrator.scoring.degenerate: loops and repetition flagged, regular but legitimate text left alone.

The degenerate examples are SmolLM2-135M-Instruct answers (greedy, 160 tokens) from the default bench.
"""

from __future__ import annotations

import json

import pytest

from orchestrator.scoring.degenerate import (
    MIN_REPEATS,
    is_degenerate,
    longest_loop,
    repeat_share,
    repeated_sentence,
    repetition_stats,
    tokens,
)

# --- real degenerate answers -----------------------------------------------------------------------------

DIGIT_LOOP = "Reputation: 3.0" + ".1" * 70 + "."
LINE_LOOP = "dunectl v0.15.0 / iTerm2 / macOS\n\n" * 8
SENTENCE_LOOP = (
    "The issue is that the `dropna` parameter is not set to `True` when creating a groupby function. "
    "The `dropna=False` parameter is used to drop the `na_sentinel` which is a special value that is used "
    "to filter the data.\n\n"
    + "The `groupby` function is not able to handle this case.\n\n" * 6
    + "The `groupby` function"
)
EXPLAIN_LOOP = (
    "This issue is a bug in the `pkg/output.go` file that prevents the `pkg/output.go` from being able to "
    "display the `dunectl` service list. The issue is that the `dunectl` service is not able to display "
    "the `dunectl` service list.\n\nThe issue is that the `dunectl` service is not able to display the "
    "`dunectl` service list. The `dunectl` service is a service that is not able to display the `dunectl` "
    "service list.\n\nThe issue is that the `dunectl` service is not able to display the `dunectl` service "
    "list. The `dunectl` service"
)
PATH_LOOP = "The fix is in `src/" + "utils/" * 12 + "cache.py`."
# a paragraph said again, cut by the token cap (repeat_penalty 1.1 + DRY, 128 tokens)
PARAGRAPH_AGAIN = (
    "The issue is that when you use `session` to store session data, it can be vulnerable to cross-site "
    "scripting (XSS) attacks if the server doesn't have a way to prevent XSS. This vulnerability allows "
    "attackers to inject malicious code into your application's environment without needing to execute any "
    "commands.\n\nIn this case, the issue is that when you use `session` to store session data, it can be "
    "vulnerable to cross-site scripting (XSS) attacks if the server doesn't have a way to prevent XSS. This "
    "vulnerability allows attackers to inject malicious code into your application's environment without "
    "needing to execute any"
)
# each sentence said twice, one word changed in between: no sentence three times, but 5-grams in bulk
NEAR_COPIES = (
    "The `lru_cache` is a modern way to manage cache.\n\n"
    + "The `lru_cache` is a dynamic cache that can be configured to only cache routes with path params.\n\n"
    * 2
    + "The `lru_cache` is a dynamic cache that can only cache routes with path params.\n\n" * 2
    + "The `lru_cache"
)
IDENT_LOOP = "Call `make_request" + "_context" * 10 + "()` first."

# --- real and ordinary non-degenerate answers --------------------------------------------------------------

PROSE = (
    "This issue is a bug in the `pkg/output` package that prevents the output of `dunectl` from being "
    "displayed on the console. The issue occurs when names contain Japanese characters (full-width) and are "
    "not supported by CJK languages, which can be caused by various factors such as Unicode encoding issues "
    "or CJK character encodings.\n\nThe issue is reported to a team member who has not read it yet. This bug "
    "affects the output of `dunectl` on macOS, which uses a different terminal environment than Windows."
)
CODE = """The issue is that `dropna=False` is ignored with several grouping columns. Here's a fix:

```python
def groupby_multi(df):
    keys = ["a", "b"]
    out = {}
    for key, group in df.groupby(keys, dropna=False):
        out[key] = group["v"].sum()
    return out
```

```diff
--- a/tabular/groupby.py
+++ b/tabular/groupby.py
@@ -10,7 +10,7 @@
-    codes = factorize(keys, na_sentinel=-1)
+    codes = factorize(keys, na_sentinel=None if not dropna else -1)
```
"""
FILE_LIST = "Files to change:\n" + "\n".join(
    f"- quillweb/middleware/cors/internal/handlers/{name}.py"
    for name in ("preflight", "headers", "origins", "vary", "config", "response", "errors", "tests")
)
CLASSIFY = '{\n    "type": "bug",\n    "component": "dunectl services list","severity":"low"\n}'
TABLE = (
    "| file | change |\n|---|---|---|---|---|---|---|---|\n| cors.py | add Vary |\n| test_cors.py | test |"
)
DIFF = """```diff
--- a/quillweb/middleware/cors.py
+++ b/quillweb/middleware/cors.py
@@ -40,9 +40,10 @@ def preflight_response(self, request_headers):
-        headers = {"Access-Control-Allow-Origin": origin}
+        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
-        headers["Access-Control-Allow-Methods"] = ", ".join(self.allow_methods)
+        headers["Access-Control-Allow-Methods"] = ", ".join(sorted(self.allow_methods))
-        headers["Access-Control-Max-Age"] = str(self.max_age)
+        headers["Access-Control-Max-Age"] = str(int(self.max_age))
```"""
VERSIONS = "Seen with quillweb 1.4.2, uvicorn 0.27.0, Python 3.12.1 on 0.0.0.0:8000 and 1.1.1.1 DNS..."


@pytest.mark.parametrize(
    "text",
    [
        DIGIT_LOOP,
        LINE_LOOP,
        SENTENCE_LOOP,
        EXPLAIN_LOOP,
        PATH_LOOP,
        IDENT_LOOP,
        PARAGRAPH_AGAIN,
        NEAR_COPIES,
    ],
    ids=lambda t: t[:20],
)
def test_loops_are_degenerate(text: str) -> None:
    assert is_degenerate(text)


@pytest.mark.parametrize(
    "text",
    [
        PROSE,
        CODE,
        DIFF,
        FILE_LIST,
        CLASSIFY,
        TABLE,
        VERSIONS,
        "",
        "   \n",
        "bug",
        "Not a bug: see the docs.",
        "{}",
    ],
    ids=lambda t: repr(t[:20]),
)
def test_legitimate_text_is_not_degenerate(text: str) -> None:
    assert not is_degenerate(text), repetition_stats(text)


def test_json_objects_and_lists_of_records_are_not_degenerate() -> None:
    labels = {"type": "feature", "component": "cli", "severity": "medium"}
    records = [{"file": f"src/app/mod_{i}.py", "line": i * 10, "change": "add"} for i in range(12)]
    assert not is_degenerate(json.dumps(labels))
    assert not is_degenerate(json.dumps(labels, indent=2))
    assert not is_degenerate(json.dumps(records, indent=2))


def test_tokens_split_inside_words_and_keep_punctuation_runs_whole() -> None:
    assert tokens("3.0.1.1") == ["3", ".", "0", ".", "1", ".", "1"]
    assert tokens("a --- b ... c") == ["a", "---", "b", "...", "c"]
    assert tokens("foo/bar_baz(x)") == ["foo", "/", "bar", "_", "baz", "(", "x", ")"]
    assert tokens("été__2") == ["été", "__", "2"]
    assert tokens("") == []


def test_the_loop_inside_one_word_is_found_with_its_unit() -> None:
    stats = repetition_stats(DIGIT_LOOP)
    assert stats["loop"] and stats["loop_unit"] in {".1", "1."}
    assert stats["loop_repeats"] >= 70


def test_loop_threshold_is_min_repeats_copies() -> None:
    below = "v" + ".1" * (MIN_REPEATS - 1)
    at = "v" + ".1" * MIN_REPEATS
    assert not is_degenerate(below)
    assert is_degenerate(at)
    assert not is_degenerate("very " * (MIN_REPEATS - 1))
    assert is_degenerate("very " * MIN_REPEATS)


def test_punctuation_only_units_are_not_loops() -> None:
    assert longest_loop(tokens("|---|---|---|---|---|---|---|---|---|")) == (0, ())
    assert not is_degenerate("}\n" * 20)
    assert not is_degenerate("=" * 200)


def test_the_shortest_unit_is_reported() -> None:
    assert longest_loop(tokens("a b a b a b a b")) == (4, ("a", "b"))
    assert longest_loop(tokens("x x x x")) == (4, ("x",))


def test_repeat_share_counts_word_5grams_seen_before() -> None:
    share, count = repeat_share("one two three four five " * 4)
    assert count == 16 and share == pytest.approx(1 - 5 / 16)
    assert repeat_share("one two three") == (0.0, 0)
    assert repeat_share(PROSE)[0] < 0.1


def test_repeat_share_needs_enough_words() -> None:
    short = "the file is not found " * 4  # 16 5-grams, mostly repeats: too short to judge by share
    stats = repetition_stats(short)
    assert stats["repeat_share"] > 0.5 and not stats["repetitive"]
    long = "the file is not found " * 6
    assert repetition_stats(long)["repetitive"]


def test_near_copies_are_caught_by_the_share_not_by_sentences() -> None:
    stats = repetition_stats(NEAR_COPIES)
    assert stats["sentence_copies"] == 2 and not stats["loop"]
    assert stats["repetitive"] and 0.4 <= stats["repeat_share"] < 0.6


def test_a_sentence_said_three_times_is_degenerate_twice_is_not() -> None:
    sentence = "The parser does not handle empty input."
    intro = "Reported on version 2.1 by a user of the command line tool, who attached a stack trace."
    assert not is_degenerate(f"{intro} {sentence} Then it crashes. {sentence}")
    assert is_degenerate(f"{intro} {sentence} Then it crashes. {sentence} {sentence}")
    assert repeated_sentence(f"{sentence}\n{sentence}\n{sentence}") == (
        3,
        "the parser does not handle empty input",
    )
    assert repeated_sentence("ok.\nok.\nok.\nok.") == (0, "")  # too short to count


def test_stats_explain_the_verdict() -> None:
    stats = repetition_stats(SENTENCE_LOOP)
    assert stats["degenerate"] and stats["repeated"] and stats["sentence_copies"] >= 6
    assert set(stats) >= {"tokens", "loop_repeats", "ngrams", "repeat_share", "loop", "repetitive"}
    empty = repetition_stats("")
    assert empty["tokens"] == 0 and not empty["degenerate"]
