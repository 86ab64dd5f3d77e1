"""Regenerate ``tests/contracts/*.json`` from the providers' API descriptions in ``../shared/specs``.

Each contract is one self-contained JSON Schema (2020-12): the request and response schemas the tests
validate against, plus every schema they reach through ``$ref``, bundled under ``$defs`` with the
references rewritten to ``#/$defs/...``. Applied while extracting (and recorded in each file's header):

- OpenAPI 3.0 keywords turned into JSON Schema: ``nullable`` (dropped where there is no ``type``, else
  folded into ``type``), boolean ``exclusiveMinimum``/``exclusiveMaximum``, and a ``discriminator`` with
  a full ``mapping`` turned into ``if``/``then`` branches (plain JSON Schema ignores it);
- the known defects listed in ``../shared/specs/README.md`` (Gemini's body ``model`` is not required);
- sample data and vendor extensions (``example``, ``examples``, ``x-*``) left out: they never validate.

Usage: ``python tests/contracts/extract.py [--specs DIR] [--check]`` (``--check``: exit 1 and name the
stale files instead of writing them; the extraction date is not compared).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SPECS_ENV = "ORCHESTRATOR_SPECS_DIR"
SCHEMAS_PREFIX = "#/components/schemas/"
HEADER = "x-contract"

# keywords whose values are data (never schemas, never keywords): not walked
DATA_KEYWORDS = frozenset({"enum", "const", "default", "example", "examples", "required", "discriminator"})
# keywords whose values map names (not keywords) to schemas
NAMED_SCHEMAS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
DROPPED = frozenset({"example", "examples"})

CHANGES = [
    "OpenAPI 3.0 nullable folded into type (dropped where there is no type)",
    "boolean exclusiveMinimum/exclusiveMaximum turned into the 2020-12 numeric form",
    "discriminator with a full mapping turned into if/then branches on the property's value",
    "example, examples and x-* extensions left out",
    "$ref rewritten from #/components/schemas/... to #/$defs/...",
]


@dataclass(frozen=True)
class Contract:
    """One contract file: where it comes from and which schemas it starts from."""

    source: str
    origin: str
    request: str  # a name in components/schemas, or a JSON pointer into the description
    response: str
    aliases: dict[str, str] = field(default_factory=dict)  # JSON pointer -> name in $defs
    defects: tuple[str, ...] = ()


CONTRACTS: dict[str, Contract] = {
    "openai": Contract(
        "openai.openapi.yaml",
        "openai/openai-openapi (main @ f85dbe2)",
        "CreateChatCompletionRequest",
        "CreateChatCompletionResponse",
    ),
    "anthropic": Contract(
        "anthropic.openapi.yaml",
        "Anthropic's published description, vendored in davidmigloz/ai_clients_dart",
        "CreateMessageParams",
        "Message",
    ),
    "cohere": Contract(
        "cohere.openapi.yaml",
        "cohere-ai/cohere-developer-experience",
        "Chatv2RequestBody",
        "ChatResponseV2",
        aliases={"#/paths/~1v2~1chat/post/requestBody/content/application~1json/schema": "Chatv2RequestBody"},
    ),
    "gemini": Contract(
        "gemini.openapi.json",
        "Google's discovery export, vendored in davidmigloz/ai_clients_dart",
        "GenerateContentRequest",
        "GenerateContentResponse",
        defects=("GenerateContentRequest: model not required (the API takes it in the URL path)",),
    ),
    "ollama": Contract(
        "ollama.openapi.yaml",
        "ollama/ollama docs/openapi.yaml",
        "ChatRequest",
        "ChatResponse",
    ),
}


def default_specs_dir() -> Path:
    """``$ORCHESTRATOR_SPECS_DIR`` when set, else ``../shared/specs`` next to the repository."""
    override = os.environ.get(SPECS_ENV)
    return Path(override) if override else ROOT.parent / "shared" / "specs"


# --------------------------------------------------------------------------- reading a description


def read_description(path: Path) -> dict[str, Any]:
    """A description as parsed (YAML or JSON), not normalised."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def resolve_pointer(doc: Any, pointer: str) -> Any:
    """The node at a local JSON pointer (``#/a/b``)."""
    if not pointer.startswith("#"):
        raise ValueError(f"not a local reference: {pointer!r}")
    node = doc
    for part in filter(None, pointer[1:].split("/")):
        node = node[int(part)] if isinstance(node, list) else node[_unescape(part)]
    return node


# --------------------------------------------------------------------------- normalising


def walk_schema(node: Any, visit: Any) -> None:
    """Call ``visit`` on every schema object under ``node`` (skipping data such as ``enum`` values and
    the names under ``properties``)."""
    if isinstance(node, list):
        for item in node:
            walk_schema(item, visit)
        return
    if not isinstance(node, dict):
        return
    visit(node)
    for key, value in list(node.items()):
        if key in DATA_KEYWORDS or key.startswith("x-"):
            continue
        if key in NAMED_SCHEMAS and isinstance(value, dict):
            for sub in value.values():
                walk_schema(sub, visit)
        else:
            walk_schema(value, visit)


def normalise_node(node: dict[str, Any]) -> None:
    """OpenAPI 3.0 keywords of one schema object to JSON Schema 2020-12, in place."""
    if "nullable" in node:
        nullable = node.pop("nullable")
        kind = node.get("type")
        if nullable is True and isinstance(kind, str):
            node["type"] = [kind, "null"]
    for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(key), bool) and node.pop(key) and bound in node:
            node[key] = node.pop(bound)
    resolve_discriminator(node)


def resolve_discriminator(node: dict[str, Any]) -> None:
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


def normalise_description(doc: Any) -> Any:
    """Every schema of a whole description normalised in place: ``components/schemas`` and each
    inline ``schema`` (request bodies, responses, parameters). ``doc`` is returned."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "schema":
                walk_schema(value, normalise_node)
            elif key == "schemas" and isinstance(value, dict):
                for schema in value.values():
                    walk_schema(schema, normalise_node)
            else:
                normalise_description(value)
    elif isinstance(doc, list):
        for value in doc:
            normalise_description(value)
    return doc


def apply_defects(name: str, defs: dict[str, Any]) -> None:
    """The known defects of one description (``../shared/specs/README.md``), fixed in place."""
    if name == "gemini" and "GenerateContentRequest" in defs:
        schema = defs["GenerateContentRequest"]
        schema["required"] = [r for r in schema.get("required", []) if r != "model"]


def load_spec(path: Path) -> dict[str, Any]:
    """A whole description, normalised and with its known defects fixed (for tests needing more)."""
    doc = normalise_description(read_description(path))
    for name, contract in CONTRACTS.items():
        if contract.source == path.name:
            apply_defects(name, doc.get("components", {}).get("schemas", {}))
    return doc


# --------------------------------------------------------------------------- bundling


def _strip(node: dict[str, Any]) -> None:
    for key in [k for k in node if k in DROPPED or k.startswith("x-")]:
        del node[key]


class _Bundler:
    """Collects the schemas reachable from the roots and rewrites their references."""

    def __init__(self, doc: dict[str, Any], aliases: dict[str, str]) -> None:
        self.doc = doc
        self.aliases = aliases
        self.defs: dict[str, Any] = {}
        self.origins: dict[str, str] = {}
        self.todo: list[str] = []

    def target(self, pointer: str) -> str:
        """The ``#/$defs/...`` pointer for a reference into the description (queued for bundling)."""
        if pointer in self.aliases:
            name, rest = self.aliases[pointer], ""
        elif pointer.startswith(SCHEMAS_PREFIX):
            head, _, tail = pointer[len(SCHEMAS_PREFIX) :].partition("/")
            name, rest = _unescape(head), f"/{tail}" if tail else ""
            pointer = SCHEMAS_PREFIX + head
        else:
            raise ValueError(f"reference outside components/schemas with no alias: {pointer!r}")
        if self.origins.setdefault(name, pointer) != pointer:
            raise ValueError(f"two sources for $defs/{name}: {self.origins[name]!r} and {pointer!r}")
        if name not in self.defs and pointer not in self.todo:
            self.todo.append(pointer)
        return f"#/$defs/{_escape(name)}{rest}"

    def rewrite(self, node: dict[str, Any]) -> None:
        _strip(node)
        normalise_node(node)
        ref = node.get("$ref")
        if isinstance(ref, str):
            node["$ref"] = self.target(ref)
        disc = node.get("discriminator")
        if isinstance(disc, dict) and isinstance(disc.get("mapping"), dict):
            disc["mapping"] = {k: self.target(v) for k, v in disc["mapping"].items()}

    def run(self, roots: list[str]) -> dict[str, Any]:
        for root in roots:
            self.target(root)
        while self.todo:
            pointer = self.todo.pop(0)
            name = self.aliases.get(pointer) or _unescape(pointer[len(SCHEMAS_PREFIX) :])
            schema = copy.deepcopy(resolve_pointer(self.doc, pointer))
            self.defs[name] = schema  # before walking: a schema may refer to itself
            walk_schema(schema, self.rewrite)
        return self.defs


def _root_pointer(contract: Contract, name: str) -> str:
    for pointer, alias in contract.aliases.items():
        if alias == name:
            return pointer
    return name if name.startswith("#") else SCHEMAS_PREFIX + _escape(name)


def licence(info: dict[str, Any]) -> str:
    """What the description's ``info.license`` says, or that it says nothing."""
    lic = info.get("license")
    if not isinstance(lic, dict) or not lic.get("name"):
        return "licence not stated in the source"
    extra = lic.get("identifier") or lic.get("url")
    where = f"{lic['name']} ({extra})" if extra and extra != lic["name"] else str(lic["name"])
    return f"{where}, as stated in the source's info.license"


def extract(name: str, specs: Path, date: str | None = None) -> dict[str, Any]:
    """The contract ``name`` as a JSON document, extracted from the description in ``specs``."""
    contract = CONTRACTS[name]
    doc = read_description(specs / contract.source)
    roots = {"request": contract.request, "response": contract.response}
    pointers = {role: _root_pointer(contract, root) for role, root in roots.items()}
    bundler = _Bundler(doc, contract.aliases)
    found = bundler.run(list(pointers.values()))
    apply_defects(name, found)
    order = [*roots.values(), *sorted(n for n in found if n not in roots.values())]
    info = doc.get("info", {})
    header = {
        "source": f"../shared/specs/{contract.source}",
        "source_title": info.get("title"),
        "source_version": str(info.get("version")),
        "origin": contract.origin,
        "licence": licence(info),
        "schemas": roots,
        "schema_sources": {root: pointers[role] for role, root in roots.items()},
        "extracted": date or dt.date.today().isoformat(),
        "generator": "tests/contracts/extract.py (do not edit this file by hand)",
        "changes": [*CHANGES, *(f"known defect fixed: {d}" for d in contract.defects)],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        HEADER: header,
        "$defs": {n: found[n] for n in order},
    }


def render(document: dict[str, Any]) -> str:
    """The file's text (stable, so that a fresh extraction can be compared byte for byte)."""
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def _delta(text: str, fresh: dict[str, Any]) -> str:
    """Which parts of a committed contract differ from the fresh one (a short summary)."""
    try:
        old = json.loads(text)
        old_defs, old_header = dict(old["$defs"]), dict(old[HEADER])
    except (ValueError, KeyError, TypeError):
        return " (not a contract file)"
    new_defs, new_header = fresh["$defs"], fresh[HEADER]
    parts = []
    for label, names in (
        ("new", sorted(set(new_defs) - set(old_defs))),
        ("gone", sorted(set(old_defs) - set(new_defs))),
        ("changed", sorted(n for n in set(old_defs) & set(new_defs) if old_defs[n] != new_defs[n])),
        (
            "header",
            sorted(k for k in set(old_header) | set(new_header) if old_header.get(k) != new_header.get(k)),
        ),
    ):
        if names:
            parts.append(f"{label}: {', '.join(names)}")
    return f" ({'; '.join(parts) or 'formatting only'})"


def stale(specs: Path, out: Path = HERE) -> list[str]:
    """Why the committed contracts in ``out`` differ from a fresh extraction (empty: all fresh)."""
    problems = []
    for name in CONTRACTS:
        path = out / f"{name}.json"
        if not path.is_file():
            problems.append(f"{path.name}: missing")
            continue
        text = path.read_text(encoding="utf-8")
        try:
            date = json.loads(text)[HEADER]["extracted"]
        except (ValueError, KeyError, TypeError):
            date = None
        fresh = extract(name, specs, date)
        if render(fresh) != text:
            problems.append(
                f"{path.name}: differs from {specs / CONTRACTS[name].source}{_delta(text, fresh)}"
            )
    for path in sorted(out.glob("*.json")):
        if path.stem not in CONTRACTS:
            problems.append(f"{path.name}: not a contract extract.py knows")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=Path, default=default_specs_dir(), help="the descriptions' folder")
    parser.add_argument("--out", type=Path, default=HERE, help="where the contracts go")
    parser.add_argument("--check", action="store_true", help="report stale files, write nothing")
    args = parser.parse_args(argv)
    if not args.specs.is_dir():
        print(f"specs folder not found: {args.specs}", file=sys.stderr)
        return 2
    if args.check:
        problems = stale(args.specs, args.out)
        for problem in problems:
            print(f"stale: {problem}", file=sys.stderr)
        return 1 if problems else 0
    for name in CONTRACTS:
        path = args.out / f"{name}.json"
        path.write_text(render(extract(name, args.specs)), encoding="utf-8")
        print(f"{path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
