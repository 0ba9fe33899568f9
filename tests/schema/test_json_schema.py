"""The JSON Schema for editors: draft-07, generated from the Config, committed copy up to date."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from loraplan.schema.config import Config, LoraSection, QuantizationSection, TrainingSection
from loraplan.schema.json_schema import COMMITTED, DRAFT_07, NOT_DRAFT_07, generate, render

REGENERATE = "loraplan schema > loraplan/schema/loraplan.schema.json"


def walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_committed_schema_is_up_to_date():
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        f"{COMMITTED} is stale (the Config changed); regenerate it with: {REGENERATE}"
    )


def test_schema_is_valid_draft_07():
    schema = generate()
    assert schema["$schema"] == DRAFT_07
    jsonschema.Draft7Validator.check_schema(schema)
    assert "definitions" in schema and "$defs" not in schema


def test_schema_uses_no_newer_keywords_and_no_ref_siblings():
    for node in walk(generate()):
        properties = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        keywords = set(node) - set(properties)
        assert not keywords & NOT_DRAFT_07, keywords & NOT_DRAFT_07
        if "$ref" in node:
            assert set(node) == {"$ref"}, node  # draft-07 ignores keywords beside $ref
            assert node["$ref"].startswith("#/definitions/")


def test_descriptions_come_from_the_pydantic_fields():
    schema = generate()
    places = {Config: schema, **{m: schema["definitions"][m.__name__]
                                 for m in (LoraSection, QuantizationSection, TrainingSection)}}
    for model, node in places.items():
        assert set(node["properties"]) == set(model.model_fields)
        for name, field in model.model_fields.items():
            assert node["properties"][name]["description"] == field.description
        assert node["additionalProperties"] is False


def load_yaml(path):
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def test_examples_validate_against_the_schema(examples_dir):
    validator = jsonschema.Draft7Validator(json.loads(COMMITTED.read_text(encoding="utf-8")))
    examples = sorted(examples_dir.glob("*.yaml"))
    assert len(examples) >= 4
    for path in examples:
        errors = [e.message for e in validator.iter_errors(load_yaml(path))]
        assert errors == [], f"{path.name}: {errors}"


def test_examples_carry_the_schema_modeline(examples_dir):
    for path in sorted(examples_dir.glob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../loraplan/schema/loraplan.schema.json", path.name


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"base_model": "m", "lora": {"lora_alpah": 16}}, "lora_alpah"),
        ({"base_model": "m", "lora": {"r": 0}}, "minimum"),
        ({"base_model": "m", "lora": {}, "adapter": "dora"}, "dora"),
        ({"lora": {}}, "base_model"),
        ({"base_model": "m", "lora": {"init_lora_weights": "pisa"}}, "pisa"),
    ],
)
def test_schema_rejects_what_the_loader_rejects(data, fragment):
    errors = list(jsonschema.Draft7Validator(generate()).iter_errors(data))
    assert errors
    assert any(fragment in e.message or fragment in json.dumps(e.schema) for e in errors)


def test_schema_accepts_pissa_niter():
    data = {"base_model": "m", "lora": {"init_lora_weights": "pissa_niter_16"}}
    assert list(jsonschema.Draft7Validator(generate()).iter_errors(data)) == []
