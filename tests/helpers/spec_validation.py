"""Validate request bodies and response fixtures against the providers' API contracts.

The contracts are committed in ``tests/contracts/`` (one self-contained JSON Schema per provider,
extracted from the published descriptions in ``../shared/specs`` by ``tests/contracts/extract.py``),
so validation never needs the specs folder. The OpenAPI-to-JSON-Schema normalisation and the known
defects of the descriptions are applied at extraction time (see each file's ``x-contract`` header).

``load_spec`` still reads a whole description, normalised the same way, for a test that needs more
than the contracts; it skips the test when the specs folder is absent (``$ORCHESTRATOR_SPECS_DIR``
overrides where it is looked for).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

CONTRACTS_DIR = Path(__file__).resolve().parents[1] / "contracts"
SPECS_ENV = "ORCHESTRATOR_SPECS_DIR"
SPECS_DIR = Path(os.environ.get(SPECS_ENV) or Path(__file__).resolve().parents[2].parent / "shared" / "specs")

# provider -> (contract in tests/contracts, top-level body fields the contract lacks)
REQUEST_CONTRACTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "openai": ("openai", ()),
    "openrouter": ("openai", ("models", "provider", "usage")),
    "anthropic": ("anthropic", ()),
    "cohere": ("cohere", ()),
    "gemini": ("gemini", ()),
    "ollama": ("ollama", ()),
}

# provider -> contract in tests/contracts
RESPONSE_CONTRACTS: dict[str, str] = {
    "openai": "openai",
    "openrouter": "openai",
    "anthropic": "anthropic",
    "cohere": "cohere",
    "gemini": "gemini",
    "ollama": "ollama",
}


@cache
def load_contract(name: str) -> dict[str, Any]:
    """One committed contract (``tests/contracts/<name>.json``), parsed once. Do not mutate it."""
    return json.loads((CONTRACTS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def contract_schema(name: str, schema: str) -> dict[str, Any]:
    """One schema of a contract by its name in the description (``$defs/<schema>``)."""
    return load_contract(name)["$defs"][schema]


@cache
def _validator(name: str, role: str) -> Any:
    """A validator for the contract's ``request`` or ``response`` schema."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    contract = load_contract(name)
    root = contract["x-contract"]["schemas"][role]
    uri = f"urn:contract:{name}"
    resource = Resource.from_contents(contract, default_specification=DRAFT202012)
    registry = Registry().with_resource(uri, resource)
    pointer = "/".join(("#", "$defs", root.replace("~", "~0").replace("/", "~1")))
    return Draft202012Validator({"$ref": f"{uri}{pointer}"}, registry=registry)


def validate_request(provider: str, body: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` is a valid request for ``provider``.

    Provider-only fields that the borrowed contract does not know (OpenRouter's
    ``models``/``provider``/``usage``) are removed first.
    """
    name, extra_fields = REQUEST_CONTRACTS[provider]
    body = copy.deepcopy(body)
    for field in extra_fields:
        body.pop(field, None)
    _check(_validator(name, "request"), body)


def validate_response(provider: str, body: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` is a valid success response for
    ``provider`` (used to keep test fixtures spec-shaped)."""
    _check(_validator(RESPONSE_CONTRACTS[provider], "response"), body)


def _check(validator: Any, body: Any) -> None:
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(body))
    if error is not None:
        raise error


# --------------------------------------------------------------------------- the full descriptions


def require_specs() -> Path:
    """The specs folder, or skip the calling test with the reason."""
    if not SPECS_DIR.is_dir():
        pytest.skip(f"../shared/specs absent: {SPECS_DIR} not found, the full descriptions cannot be read")
    return SPECS_DIR


@cache
def extract_module() -> ModuleType:
    """``tests/contracts/extract.py`` (a script, not a package: loaded from its path)."""
    spec = importlib.util.spec_from_file_location("contracts_extract", CONTRACTS_DIR / "extract.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@cache
def load_spec(filename: str) -> dict[str, Any]:
    """One whole description, normalised like the contracts (cached; skips when the specs are absent)."""
    return extract_module().load_spec(require_specs() / filename)
