"""orchestrator.toml: models, prices, limits, per-mode overrides, routing.

Where the config comes from, first match wins: an explicit path, ``$ORCHESTRATOR_CONFIG``,
``orchestrator.toml`` in the current directory or a parent, the copy shipped in the package.
"""

from __future__ import annotations

import os
import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError, UnknownModelError

PROVIDERS = ("openai", "openrouter", "anthropic", "cohere", "gemini", "ollama", "local", "baseline")
MODES = ("explain", "fix", "classify", "summarize")
CONFIG_NAME = "orchestrator.toml"
# An answer of a few thousand tokens is a few kB; 4 MiB leaves room for any honest body and stops a
# decompression bomb (1 MiB of gzip -> 1 GiB) or a junk stream long before it costs memory.
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024


class Price(BaseModel):
    """USD per million tokens on each usage axis, as of a date.

    ``cache_read`` and ``cache_write`` default to the input price and ``reasoning`` to the output
    price (how providers bill them when they do not list them apart).
    """

    model_config = ConfigDict(extra="forbid")

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None
    as_of: date | None = None

    @field_validator("input", "output", "cache_read", "cache_write", "reasoning")
    @classmethod
    def _non_negative(cls, v: float | None) -> float | None:
        if v is not None and v < 0:
            raise ValueError("must be >= 0")
        return v


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, gt=0)


class ModeOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None


class ModelSpec(BaseModel):
    """One configured model: a provider, an API model name and the parameters it is called with."""

    model_config = ConfigDict(extra="forbid")

    id: str
    provider: Literal["openai", "openrouter", "anthropic", "cohere", "gemini", "ollama", "local", "baseline"]
    model: str = ""
    description: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int = Field(default=512, gt=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    context_window: int | None = Field(default=None, gt=0)
    timeout: float = Field(default=120.0, gt=0, description="read timeout, seconds")
    connect_timeout: float = Field(default=10.0, gt=0)
    deadline: float | None = Field(
        default=None,
        gt=0,
        description="total seconds one attempt may take; default connect_timeout + timeout",
    )
    max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES, gt=0, description="cap on a response body, compressed and decoded"
    )
    price: Price | None = None
    limits: Limits = Field(default_factory=Limits)
    modes: dict[str, ModeOverride] = Field(default_factory=dict)
    fallbacks: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict, description="provider-specific settings")

    @field_validator("modes")
    @classmethod
    def _known_modes(cls, v: dict[str, ModeOverride]) -> dict[str, ModeOverride]:
        for name in v:
            if name not in MODES:
                raise ValueError(f"unknown mode {name!r} (known: {', '.join(MODES)})")
        return v

    def params_for(self, mode: str | None) -> dict[str, Any]:
        """Sampling parameters for ``mode``: the model's own, then the mode's override."""
        params: dict[str, Any] = {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "seed": self.seed,
        }
        if mode and mode in self.modes:
            params.update(self.modes[mode].model_dump(exclude_none=True))
        return params

    @property
    def attempt_deadline(self) -> float:
        """Seconds one attempt may take in all (connect, send, every read): a slow drip cannot hold it."""
        return self.deadline if self.deadline is not None else self.connect_timeout + self.timeout

    def public_dict(self) -> dict[str, Any]:
        """The spec as stored in run snapshots: everything but secrets (there are none: keys live in env)."""
        data = self.model_dump(mode="json")
        data["headers"] = {k: ("[set]" if v else "") for k, v in self.headers.items()}
        return data


class Config(BaseModel):
    """The whole configuration file, validated."""

    path: Path | None = None
    default_model: str
    models: dict[str, ModelSpec]
    routing: dict[str, Any] = Field(default_factory=dict)
    home: Path

    def model_spec(self, model_id: str) -> ModelSpec:
        """The spec for ``model_id``; an unknown id lists the known ones."""
        try:
            return self.models[model_id]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise UnknownModelError(
                f"unknown model id {model_id!r} in {self.path or 'config'}; known models: {known}"
            ) from None


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Locate the config file (see module docstring)."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path.resolve()
    env = os.environ.get("ORCHESTRATOR_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from ORCHESTRATOR_CONFIG)")
        return path.resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return Path(__file__).with_name("default.toml")


def _describe_error(path: Path, err: dict[str, Any], model_id: str | None) -> str:
    loc = [str(p) for p in err["loc"]]
    where = f"[models.{_quote(model_id)}]" if model_id else ""
    key = ".".join(loc)
    value = err.get("input")
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    shown = "" if isinstance(value, dict) or err["type"] == "missing" else f" (got {value!r})"
    return f"{path}: {where} key '{key}': {msg}{shown}".replace(":  key", ": key")


def _quote(model_id: str | None) -> str:
    return f'"{model_id}"'


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the config; every error names the file, the model id and the key."""
    cfg_path = find_config_path(path)
    try:
        raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg_path}: invalid TOML: {exc}") from None
    return config_from_dict(raw, cfg_path)


def config_from_dict(raw: dict[str, Any], cfg_path: Path) -> Config:
    """Validate an already parsed config mapping (see :func:`load_config`)."""
    problems: list[str] = []
    models: dict[str, ModelSpec] = {}
    raw_models = raw.get("models", {})
    if not isinstance(raw_models, dict) or not raw_models:
        raise ConfigError(f'{cfg_path}: no [models."<provider>/<name>"] tables')
    for model_id, table in raw_models.items():
        if not isinstance(table, dict):
            problems.append(f"{cfg_path}: [models] key '{model_id}': must be a table")
            continue
        if "provider" not in table and "/" in model_id:
            table = {"provider": model_id.split("/", 1)[0], **table}
        provider = table.get("provider")
        if provider not in PROVIDERS:
            problems.append(
                f"{cfg_path}: [models.{_quote(model_id)}] key 'provider': unknown provider {provider!r} "
                f"(known: {', '.join(PROVIDERS)})"
            )
            continue
        try:
            models[model_id] = ModelSpec(id=model_id, **table)
        except ValidationError as exc:
            problems.extend(_describe_error(cfg_path, e, model_id) for e in exc.errors())
        except TypeError as exc:
            problems.append(f"{cfg_path}: [models.{_quote(model_id)}]: {exc}")
    defaults = raw.get("defaults", {})
    default_model = defaults.get("model") or next(iter(raw_models))
    for model_id, spec in models.items():
        for fb in spec.fallbacks:
            if fb not in raw_models:
                problems.append(
                    f"{cfg_path}: [models.{_quote(model_id)}] key 'fallbacks': unknown model id {fb!r}"
                )
    if default_model not in raw_models:
        problems.append(f"{cfg_path}: [defaults] key 'model': unknown model id {default_model!r}")
    unknown_top = set(raw) - {"models", "defaults", "routing"}
    for key in sorted(unknown_top):
        problems.append(f"{cfg_path}: unknown top-level key '{key}'")
    routing = raw.get("routing", {})
    if isinstance(routing, dict):
        for mode, entry in routing.items():
            if mode not in MODES:
                problems.append(
                    f"{cfg_path}: [routing] key '{mode}': unknown mode (known: {', '.join(MODES)})"
                )
                continue
            if not isinstance(entry, dict):
                continue
            named = [("primary", entry.get("primary"))] + [
                ("fallbacks", m) for m in entry.get("fallbacks", [])
            ]
            cascade = entry.get("cascade")
            if isinstance(cascade, dict):
                named += [("cascade.models", m) for m in cascade.get("models", [])]
            for key, model_id in named:
                if model_id is not None and model_id not in raw_models:
                    problems.append(
                        f"{cfg_path}: [routing.{mode}] key '{key}': unknown model id {model_id!r}"
                    )
    if problems:
        raise ConfigError("\n".join(problems))
    home_env = os.environ.get("ORCHESTRATOR_HOME")
    if home_env:
        home = Path(home_env)
    elif cfg_path.parent == Path(__file__).parent:  # the shipped default: use the working directory
        home = Path.cwd() / ".orchestrator"
    else:
        home = cfg_path.parent / ".orchestrator"
    return Config(path=cfg_path, default_model=default_model, models=models, routing=routing, home=home)
