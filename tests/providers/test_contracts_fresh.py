"""The committed contracts (``tests/contracts/*.json``): self-contained, and as extracted from the specs."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import spec_validation
from helpers.spec_validation import CONTRACTS_DIR, extract_module, load_contract


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_contracts_are_self_contained_schemas() -> None:
    """Every contract is a valid 2020-12 schema whose references all resolve inside the file, with a
    header naming its source, schemas, date and licence."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    names = sorted(extract_module().CONTRACTS)
    assert sorted(p.stem for p in CONTRACTS_DIR.glob("*.json")) == names
    for name in names:
        contract = load_contract(name)
        header = contract["x-contract"]
        assert {"source", "schemas", "extracted", "licence"} <= set(header), name
        assert set(header["schemas"].values()) <= set(contract["$defs"]), name
        Draft202012Validator.check_schema(contract)
        resolver = (
            Registry()
            .with_resource("urn:c", Resource.from_contents(contract, default_specification=DRAFT202012))
            .resolver("urn:c")
        )
        for ref in _refs(contract):
            assert ref.startswith("#/$defs/"), f"{name}: {ref} points outside the file"
            resolver.lookup(ref)


def test_committed_contracts_match_the_specs() -> None:
    """A fresh extraction from ../shared/specs equals the committed files (the date aside)."""
    specs = spec_validation.SPECS_DIR
    if not specs.is_dir():
        pytest.skip(
            f"../shared/specs absent ({specs}): cannot check that tests/contracts/*.json are fresh; "
            "the contracts themselves are still used"
        )
    problems = extract_module().stale(specs, CONTRACTS_DIR)
    assert not problems, (
        "tests/contracts/ is stale, regenerate with `python tests/contracts/extract.py`:\n  "
        + "\n  ".join(problems)
    )
