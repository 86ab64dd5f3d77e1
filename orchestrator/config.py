"""orchestrator.toml: models, prices, limits, per-mode overrides, routing.

Where the config comes from, first match wins: an explicit path, ``$ORCHESTRATOR_CONFIG``,
``orchestrator.toml`` in the current directory or a parent, the copy shipped in the package.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import math
import os
import re
import tomllib
import traceback
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from .errors import ConfigError, UnknownModelError
from .modes import MODES as _MODES
from .providers import provider_names, sampling_problems
from .providers.sampling import local_option_problems

MODES = _MODES  # the mode registry (modes.py): built-in modes, then the task files a config loads
CONFIG_NAME = "orchestrator.toml"
# An answer of a few thousand tokens is a few kB; 4 MiB leaves room for any honest body and stops a
# decompression bomb (1 MiB of gzip -> 1 GiB) or a junk stream long before it costs memory.
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
# No real model costs more than about 600 USD per million tokens on any axis; a price far above that is
# a typo (a price per token written per million, an extra digit) that would make every cost figure absurd.
MAX_PRICE_PER_MTOK = 10_000
PRICE_AXES = ("input", "output", "cache_read", "cache_write", "reasoning")
SAMPLING_KEYS = ("temperature", "top_p", "seed")


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

    @field_validator(*PRICE_AXES)
    @classmethod
    def _plausible(cls, v: float | None) -> float | None:
        if v is None:
            return v
        if not math.isfinite(v) or v > MAX_PRICE_PER_MTOK:
            raise PydanticCustomError(
                "price",
                "must be a finite number of USD per million tokens, at most {cap}",
                {"cap": MAX_PRICE_PER_MTOK},
            )
        if v < 0:
            raise PydanticCustomError("price", "must be >= 0 USD per million tokens")
        return v


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, gt=0)


class ModeOverride(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None


class ModelSpec(BaseModel):
    """One configured model: a provider, an API model name and the parameters it is called with."""

    # allow_inf_nan=False: an inf timeout never fires and a NaN one compares false with everything
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str
    provider: str = Field(description="a registered provider (orchestrator.providers)")

    @field_validator("provider")
    @classmethod
    def _registered(cls, v: str) -> str:
        known = provider_names()
        if v not in known:
            raise ValueError(f"unknown provider {v!r} (known: {', '.join(known)})")
        return v

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
    tasks: dict[str, Any] = Field(default_factory=dict)  # name -> orchestrator.tasks.Task, from task files

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
    msg = err["msg"].removeprefix("Value error, ")
    price_axis = len(loc) == 2 and loc[0] == "price" and loc[1] in PRICE_AXES
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif price_axis and err["type"] not in ("price", "missing"):  # "cheap", a list...: one wording
        msg = f"must be a finite number of USD per million tokens, at most {MAX_PRICE_PER_MTOK}"
    shown = "" if isinstance(value, dict) or err["type"] == "missing" else f" (got {_show(value)})"
    return f"{path}: {where} key '{key}': {msg}{shown}".replace(":  key", ": key")


def _quote(model_id: str | None) -> str:
    return f'"{model_id}"'


def _show(value: Any) -> str:
    """``repr(value)``, cut short: a hostile file must not turn one message into megabytes."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: Any) -> str:
    """What a TOML value is, in the file's own words ("a string", "a table")."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, date):
        return "a date"
    return f"a {type(value).__name__}"


def _model_list_problem(value: Any) -> str | None:
    """Why ``value`` is not a list of model ids, or None when it is one."""
    if isinstance(value, list):
        odd = [m for m in value if not isinstance(m, str)]
        if not odd:
            return None
        got = f"a list holding {_kind(odd[0])}"
    else:
        got = _kind(value)
    # A lone string is the usual slip: show it written as the list it should have been.
    example = '["baseline/rules"]'
    if isinstance(value, str) and len(value) <= 80:
        example = json.dumps([value], ensure_ascii=False)
    return f"must be a list of model ids such as {example} (got {got})"


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the config; every error names the file, the model id and the key."""
    cfg_path = find_config_path(path)
    return config_from_dict(read_toml(cfg_path), cfg_path)


def read_toml(cfg_path: Path) -> dict[str, Any]:
    """Parse the file as UTF-8 TOML (a leading byte order mark is allowed); any failure is a ConfigError."""
    try:
        data = cfg_path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{cfg_path}: cannot read the file: {exc.strerror or exc}") from None
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise ConfigError(
            f"{cfg_path}: not valid UTF-8 at line {line}, byte offset {offset} (byte 0x{data[offset]:02x}); "
            "save the file as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg_path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{cfg_path}: invalid TOML: arrays or tables nested too deeply") from None


def _model_problems(
    cfg_path: Path, model_id: str, table: dict[str, Any]
) -> tuple[ModelSpec | None, list[str]]:
    """Validate one ``[models."<id>"]`` table: the spec (None when invalid) and every problem found."""
    where = f"{cfg_path}: [models.{_quote(model_id)}]"
    problems: list[str] = []
    table = dict(table)
    if "provider" not in table and "/" in model_id:
        table = {"provider": model_id.split("/", 1)[0], **table}
    provider = table.get("provider")
    known = provider_names()
    if not isinstance(provider, str) or provider not in known:
        problems.append(
            f"{where} key 'provider': unknown provider {_show(provider)} (known: {', '.join(known)})"
        )
        return None, problems
    if "fallbacks" in table:
        problem = _model_list_problem(table["fallbacks"])
        if problem:
            problems.append(f"{where} key 'fallbacks': {problem}")
            del table["fallbacks"]  # reported once here, not again by pydantic
    spec: ModelSpec | None = None
    invalid: set[str] = set()
    try:
        spec = ModelSpec(id=model_id, **table)
    except ValidationError as exc:
        problems.extend(_describe_error(cfg_path, e, model_id) for e in exc.errors())
        invalid = {".".join(str(p) for p in e["loc"]) for e in exc.errors()}
    except TypeError as exc:
        problems.append(f"{where}: {exc}")
        return None, problems
    # The config's own bounds are the widest any provider takes; here the provider's own apply. An invalid
    # table is checked too (its numbers as written), so that every problem is reported in one go.
    for key, value in _sampling_values(spec if spec is not None else table):
        if key not in invalid:
            for problem in sampling_problems(provider, {key.rsplit(".", 1)[-1]: value}):
                problems.append(f"{where} key '{key}': {problem}")
    if provider == "local" and spec is not None:
        problems.extend(f"{where} {problem}" for problem in local_option_problems(spec.options))
    return spec, problems


def _sampling_values(source: ModelSpec | dict[str, Any]) -> list[tuple[str, Any]]:
    """(key, value) of every temperature, top_p and seed a model sets, its own and its modes'."""
    if isinstance(source, ModelSpec):
        holders: list[tuple[str, Any]] = [("", vars(source))]
        holders += [(f"modes.{m}.", vars(o)) for m, o in source.modes.items()]
    else:  # a table pydantic refused: only plain numbers, the rest is reported already
        modes = source.get("modes")
        holders = [("", source)]
        if isinstance(modes, dict):
            holders += [(f"modes.{m}.", o) for m, o in modes.items() if isinstance(o, dict)]
    out = []
    for prefix, holder in holders:
        for key in SAMPLING_KEYS:
            value = holder.get(key)
            if value is None:
                continue
            if isinstance(source, dict) and (isinstance(value, bool) or not isinstance(value, (int, float))):
                continue
            out.append((prefix + key, value))
    return out


def _defaults_problems(cfg_path: Path, defaults: Any) -> tuple[str | None, list[str]]:
    """The ``[defaults]`` model id (None: not given) and the problems of the table."""
    if not isinstance(defaults, dict):
        return None, [
            f"{cfg_path}: [defaults] must be a table (got {_kind(defaults)}); write [defaults] and below it "
            'model = "<provider>/<name>"'
        ]
    problems = [
        f"{cfg_path}: [defaults] key '{key}': unknown key (known: model)"
        for key in defaults
        if key != "model"
    ]
    model = defaults.get("model")
    if model is not None and not isinstance(model, str):
        problems.append(
            f"{cfg_path}: [defaults] key 'model': must be a model id such as \"baseline/rules\" (got {_kind(model)})"
        )
        return None, problems
    return model or None, problems


def _routing_problems(cfg_path: Path, mode: str, entry: Any, known: dict[str, Any]) -> list[str]:
    """Problems of one ``[routing.<mode>]`` table (see orchestrator.routing.select.routing_entry for its keys)."""
    if not isinstance(entry, dict):
        primary = '"<provider>/<name>"'
        if isinstance(entry, str) and len(entry) <= 80:
            primary = json.dumps(entry, ensure_ascii=False)
        return [
            f"{cfg_path}: [routing] key '{mode}': must be a table (got {_kind(entry)}); write "
            f"[routing.{mode}] and below it primary = {primary}"
        ]
    where = f"{cfg_path}: [routing.{mode}]"
    problems: list[str] = []
    named: list[tuple[str, str]] = []
    primary = entry.get("primary")
    if isinstance(primary, str):
        named.append(("primary", primary))
    elif primary is not None:
        problems.append(
            f"{where} key 'primary': must be a model id such as \"baseline/rules\" (got {_kind(primary)})"
        )
    if "fallbacks" in entry:
        problem = _model_list_problem(entry["fallbacks"])
        if problem:
            problems.append(f"{where} key 'fallbacks': {problem}")
        else:
            named += [("fallbacks", m) for m in entry["fallbacks"]]
    cascade = entry.get("cascade")
    if cascade is not None and not isinstance(cascade, dict):
        problems.append(
            f"{where} key 'cascade': must be a table such as {{ models = [cheap, ..., strong], threshold = 0.5 }} "
            f"(got {_kind(cascade)})"
        )
    elif isinstance(cascade, dict):
        models = cascade.get("models")
        problem = _model_list_problem(models) if models is not None else None
        if problem:
            problems.append(f"{where} key 'cascade.models': {problem}")
        elif not models:
            problems.append(f"{where} key 'cascade.models': a cascade needs models = [cheap, ..., strong]")
        else:
            named += [("cascade.models", m) for m in models]
        steps = cascade.get("prompts")
        if steps is not None:
            if not isinstance(steps, list) or not isinstance(models, list) or len(steps) != len(models):
                problems.append(
                    f"{where} key 'cascade.prompts': one prompt variant per model in cascade.models "
                    f"(got {_show(steps)})"
                )
            else:
                problems += [
                    p for step in steps if (p := _prompt_problem(where, "cascade.prompts", mode, step))
                ]
        threshold = cascade.get("threshold")
        number = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
        if threshold is not None and not (number and 0 <= threshold <= 1):  # NaN fails the range too
            problems.append(
                f"{where} key 'cascade.threshold': must be a number from 0 to 1 (got {_show(threshold)})"
            )
    router = entry.get("router")
    if router is not None and not (
        isinstance(router, str) and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", router)
    ):
        problems.append(
            f"{where} key 'router': must be the name of a stored router such as \"{mode}-RUN_ID\" "
            f"(written by `orchestrator route RUN_ID --router learned --write`; got {_show(router)})"
        )
    tau = entry.get("router_tau")
    if tau is not None and not (
        isinstance(tau, (int, float)) and not isinstance(tau, bool) and 0 <= tau < 1e3
    ):
        problems.append(f"{where} key 'router_tau': must be a number >= 0 (got {_show(tau)})")
    if primary is None and cascade is None:
        problems.append(f'{where}: needs primary = "<provider>/<name>" (or a cascade table)')
    prompt = entry.get("prompt")
    if prompt is not None and (problem := _prompt_problem(where, "prompt", mode, prompt)):
        problems.append(problem)
    for key, model_id in named:
        if model_id not in known:
            problems.append(f"{where} key '{key}': unknown model id {_show(model_id)}")
    return problems


def _prompt_problem(where: str, key: str, mode: str, prompt: Any) -> str | None:
    """Why ``prompt`` is not a prompt variant of the task ``mode`` (None when it is)."""
    from .modes import MODES

    prompts = [m.prompt for m in MODES.values() if getattr(m, "task", "") == mode]
    if not prompts:
        return f"{where} key '{key}': {mode!r} is not a task with prompt variants (a task file)"
    if prompt not in prompts:
        return f"{where} key '{key}': task {mode!r} has no prompt {_show(prompt)} (its prompts: {', '.join(prompts)})"
    return None


def _load_task_files(raw: dict[str, Any], cfg_path: Path) -> dict[str, Any]:
    """The task files of this project: ``tasks/`` beside the config (the working directory's for the shipped
    default) and every folder in ``[tasks] dirs``; each variant is registered as a mode."""
    from .resources import is_default_config

    section = raw.get("tasks", {})
    if not isinstance(section, dict) or not isinstance(section.get("dirs", []), list):
        raise ConfigError(f"{cfg_path}: [tasks] key 'dirs': a list of folders, e.g. dirs = [\"tasks\"]")
    shipped = cfg_path.name == "default.toml" and is_default_config(cfg_path)  # name first: no resolve()
    root = Path.cwd() if shipped else cfg_path.parent
    folders = [root / "tasks"] if (root / "tasks").is_dir() else []
    for entry in section.get("dirs", []):
        folder = (root / str(entry)).resolve()
        if not folder.is_dir():
            raise ConfigError(f"{cfg_path}: [tasks] key 'dirs': {entry!r} is not a folder (from {root})")
        if folder not in [f.resolve() for f in folders]:
            folders.append(folder)
    if not folders:
        return {}
    from .tasks.builtin import SHIPPED
    from .tasks.loader import load_tasks  # Jinja2 loads only for a project that has task files
    from .tasks.modes import register_task

    tasks = load_tasks(folders, shipped=SHIPPED)  # a file named like a shipped task adds prompts to it
    for task in tasks.values():
        register_task(task)
    return tasks


def _load_scorer_files(raw: dict[str, Any], cfg_path: Path) -> None:
    """Run the project's scorer files (``[scoring] files = ["scorers.py"]``): Python that registers scorers
    with ``@orchestrator.scoring.scorer``. This is code that runs with your rights when the config loads,
    like a conftest.py: list only files you wrote or reviewed."""
    if "scoring" not in raw:
        return
    import importlib.util

    from .resources import is_default_config

    section = raw.get("scoring", {})
    files = section.get("files", []) if isinstance(section, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError(
            f"{cfg_path}: [scoring] key 'files': a list of Python files, e.g. files = [\"scorers.py\"]"
        )
    root = Path.cwd() if is_default_config(cfg_path) else cfg_path.parent
    for entry in files:
        path = (root / entry).resolve()
        if not path.is_file():
            raise ConfigError(f"{cfg_path}: [scoring] key 'files': {entry!r} is not a file (from {root})")
        name = "orchestrator_user_scorers_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as exc:  # the user's code: say where it failed, in one line
            line = exc.__traceback__.tb_lineno if exc.__traceback__ else "?"
            frames = traceback.extract_tb(exc.__traceback__)
            line = next((f.lineno for f in reversed(frames) if Path(f.filename) == path), line)
            raise ConfigError(f"{path}:{line}: the scorer file failed: {type(exc).__name__}: {exc}") from None


def config_from_dict(raw: dict[str, Any], cfg_path: Path) -> Config:
    """Validate an already parsed config mapping (see :func:`load_config`); every problem is reported at once."""
    problems: list[str] = []
    _load_scorer_files(raw, cfg_path)  # before the task files: a task may name a project scorer
    tasks = _load_task_files(raw, cfg_path)  # first: per-mode overrides and [routing] may name a task
    models: dict[str, ModelSpec] = {}
    raw_models = raw.get("models", {})
    if not isinstance(raw_models, dict) or not raw_models:
        raise ConfigError(f'{cfg_path}: no [models."<provider>/<name>"] tables')
    for model_id, table in raw_models.items():
        if not isinstance(table, dict):
            problems.append(f"{cfg_path}: [models] key '{model_id}': must be a table (got {_kind(table)})")
            continue
        spec, found = _model_problems(cfg_path, model_id, table)
        problems += found
        if spec is not None:
            models[model_id] = spec
    default_model, found = _defaults_problems(cfg_path, raw.get("defaults", {}))
    problems += found
    for model_id, spec in models.items():
        for fb in spec.fallbacks:
            if fb not in raw_models:
                problems.append(
                    f"{cfg_path}: [models.{_quote(model_id)}] key 'fallbacks': unknown model id {fb!r}"
                )
    if default_model is None:
        default_model = next(iter(raw_models))
    elif default_model not in raw_models:
        problems.append(f"{cfg_path}: [defaults] key 'model': unknown model id {_show(default_model)}")
    unknown_top = set(raw) - {"models", "defaults", "routing", "tasks", "scoring"}
    for key in sorted(unknown_top):
        problems.append(f"{cfg_path}: unknown top-level key '{key}'")
    routing = raw.get("routing", {})
    if not isinstance(routing, dict):
        problems.append(
            f"{cfg_path}: [routing] must be a table of [routing.<mode>] tables (got {_kind(routing)}); "
            f"modes: {', '.join(MODES)}"
        )
        routing = {}
    for mode, entry in routing.items():
        if mode not in MODES:
            problems.append(f"{cfg_path}: [routing] key '{mode}': unknown mode (known: {', '.join(MODES)})")
            continue
        problems += _routing_problems(cfg_path, mode, entry, raw_models)
    if problems:
        raise ConfigError("\n".join(problems))
    home_env = os.environ.get("ORCHESTRATOR_HOME")
    if home_env:
        home = Path(home_env)
    elif cfg_path.parent == Path(__file__).parent:  # the shipped default: use the working directory
        home = Path.cwd() / ".orchestrator"
    else:
        home = cfg_path.parent / ".orchestrator"
    return Config(
        path=cfg_path, default_model=default_model, models=models, routing=routing, home=home, tasks=tasks
    )
