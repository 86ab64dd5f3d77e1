"""Validate request bodies against the providers' published API descriptions in ``../shared/specs``.

Each description is parsed once per session (they are large) and normalised where it is not plain
JSON Schema: OpenAPI 3.0 ``nullable`` (dropped where there is no ``type``, else folded into ``type``)
and boolean ``exclusiveMinimum``/``exclusiveMaximum``. Known defects of the descriptions are applied
here too (see ``../shared/specs/README.md``): Gemini's body ``model`` is not required.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema.exceptions import best_match

SPECS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "specs"

# provider -> (file, request schema in components/schemas, top-level body fields the description lacks)
REQUEST_SCHEMAS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "openai": ("openai.openapi.yaml", "CreateChatCompletionRequest", ()),
    "openrouter": ("openai.openapi.yaml", "CreateChatCompletionRequest", ("models", "provider", "usage")),
    "anthropic": ("anthropic.openapi.yaml", "CreateMessageParams", ()),
    "cohere": (
        "cohere.openapi.yaml",
        "#/paths/~1v2~1chat/post/requestBody/content/application~1json/schema",
        (),
    ),
    "gemini": ("gemini.openapi.json", "GenerateContentRequest", ()),
    "ollama": ("ollama.openapi.yaml", "ChatRequest", ()),
}

# provider -> (file, response schema in components/schemas)
RESPONSE_SCHEMAS: dict[str, tuple[str, str]] = {
    "openai": ("openai.openapi.yaml", "CreateChatCompletionResponse"),
    "openrouter": ("openai.openapi.yaml", "CreateChatCompletionResponse"),
    "anthropic": ("anthropic.openapi.yaml", "Message"),
    "cohere": ("cohere.openapi.yaml", "ChatResponseV2"),
    "gemini": ("gemini.openapi.json", "GenerateContentResponse"),
    "ollama": ("ollama.openapi.yaml", "ChatResponse"),
}


def require_specs() -> Path:
    """The specs folder, or skip the calling test with the reason."""
    if not SPECS_DIR.is_dir():
        pytest.skip(f"../shared/specs absent: {SPECS_DIR} not found, request bodies cannot be validated")
    return SPECS_DIR


def _normalise(node: Any) -> Any:
    """OpenAPI 3.0 keywords to JSON Schema 2020-12, in place."""
    if isinstance(node, dict):
        if "nullable" in node:
            nullable = node.pop("nullable")
            kind = node.get("type")
            if nullable is True and isinstance(kind, str):
                node["type"] = [kind, "null"]
        for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(node.get(key), bool) and node.pop(key) and bound in node:
                node[key] = node.pop(bound)
        _resolve_discriminator(node)
        for value in node.values():
            _normalise(value)
    elif isinstance(node, list):
        for value in node:
            _normalise(value)
    return node


def _resolve_discriminator(node: dict[str, Any]) -> None:
    """Give an OpenAPI ``discriminator`` its meaning: the property's value picks the schema.

    Plain JSON Schema ignores ``discriminator``, so a ``oneOf`` whose branches overlap (Cohere's
    ``ResponseFormatV2``: both branches accept ``type: json_object``) fails although the API is fine.
    """
    disc = node.get("discriminator")
    branches = node.get("oneOf") or node.get("anyOf")
    if not isinstance(disc, dict) or not isinstance(disc.get("mapping"), dict) or not branches:
        return
    mapping: dict[str, str] = disc["mapping"]
    refs = {b.get("$ref") for b in branches if isinstance(b, dict)}
    if not refs <= set(mapping.values()):
        return  # a branch named only implicitly: leave the oneOf as it is
    prop = disc["propertyName"]
    node.pop("oneOf" if "oneOf" in node else "anyOf")
    picks = [{"if": {"properties": {prop: {"const": k}}}, "then": {"$ref": v}} for k, v in mapping.items()]
    node.setdefault("allOf", []).extend(
        [{"required": [prop], "properties": {prop: {"enum": sorted(mapping)}}}, *picks]
    )


@cache
def load_spec(filename: str) -> dict[str, Any]:
    """One parsed, normalised description (cached for the session)."""
    path = require_specs() / filename
    text = path.read_text(encoding="utf-8")
    if filename.endswith(".json"):
        doc = json.loads(text)
    else:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        doc = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    doc = _normalise(doc)
    if filename.startswith("gemini"):  # known defect: the model is in the URL path, not the body
        schema = doc["components"]["schemas"]["GenerateContentRequest"]
        schema["required"] = [r for r in schema.get("required", []) if r != "model"]
    return doc


@cache
def _validator(filename: str, name: str) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    uri = f"urn:spec:{filename}"
    resource = Resource.from_contents(load_spec(filename), default_specification=DRAFT202012)
    registry = Registry().with_resource(uri, resource)
    pointer = name if name.startswith("#") else f"#/components/schemas/{name}"
    return Draft202012Validator({"$ref": f"{uri}{pointer}"}, registry=registry)


def validate_request(provider: str, body: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` is a valid request for ``provider``.

    Skips the test when ``../shared/specs`` is absent. Provider-only fields that the borrowed
    description does not know (OpenRouter's ``models``/``provider``/``usage``) are removed first.
    """
    require_specs()
    filename, name, extra_fields = REQUEST_SCHEMAS[provider]
    body = copy.deepcopy(body)
    for field in extra_fields:
        body.pop(field, None)
    _check(_validator(filename, name), body)


def validate_response(provider: str, body: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` is a valid success response for ``provider``
    (used to keep test fixtures spec-shaped). Skips the test when ``../shared/specs`` is absent."""
    require_specs()
    _check(_validator(*RESPONSE_SCHEMAS[provider]), body)


def _check(validator: Any, body: Any) -> None:
    error = best_match(validator.iter_errors(body))
    if error is not None:
        raise error
