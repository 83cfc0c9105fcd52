"""check_package holds settings.yml's sample_post_data to the wrapper's input schema, read from the
syntax tree (the package's code is never run), and RecordSchema names fields without quoting values."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InvalidInputError
from core.onboarding.package import check_package
from core.onboarding.request_schema import RecordSchema
from tests.model_package_corpus import clean_package

SETTINGS = 'python: "3.11"\ntask: text-classification\nwrapper: TextClassifier\nsample_post_data:\n'


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    return clean_package(tmp_path / "package")


def _findings(root: Path) -> list[tuple[str, str, str]]:
    return [(f.path, f.reason, f.message) for f in check_package(root).findings]


def test_the_shipped_wrappers_sample_passes(clean: Path) -> None:
    assert _findings(clean) == []


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ("  text: ''\n", "sample_post_data.text breaks minLength 1"),
        (f"  text: {'x' * 1001}\n", "sample_post_data.text breaks maxLength 1000"),
        ("  text: 5\n", 'sample_post_data.text must be of type "string", not integer'),
        ("  words: fine\n", 'sample_post_data misses the required field(s) ["text"]'),
        ("  text: fine\n  extra: 1\n", 'sample_post_data has field(s) the schema does not allow: ["extra"]'),
    ],
)
def test_a_sample_outside_the_input_schema_is_named_with_the_fix(clean: Path, sample: str, message: str) -> None:
    (clean / "src" / "settings.yml").write_text(SETTINGS + sample)
    assert _findings(clean) == [
        (
            "src/settings.yml",
            "sample",
            f"{message}; make sample_post_data a request valid under TextClassifier.input_schema",
        )
    ]
    assert "x" * 100 not in str(_findings(clean))  # the value itself is never quoted


def _wrapper_with_input_schema(clean: Path, body: str, prelude: str = "") -> None:
    source = (clean / "src" / "inference.py").read_text()
    start = source.index("    def input_schema(self)")
    end = source.index("    def output_schema(self)")
    (clean / "src" / "inference.py").write_text(
        prelude + source[:start] + f"    def input_schema(self) -> dict[str, Any]:\n{body}\n" + source[end:]
    )


def test_module_constants_in_the_schema_are_read_without_running_code(clean: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _wrapper_with_input_schema(
        clean,
        '        """Docstrings are allowed."""\n        return {"type": "object", "required": [KEY], '
        '"properties": {KEY: {"type": "string", "maxLength": -LIMIT}}}',
        prelude=f"open({str(marker)!r}, 'w').close()\nKEY = 'text'\nLIMIT = -3\n",
    )
    (clean / "src" / "settings.yml").write_text(SETTINGS + "  text: four\n")
    assert _findings(clean) == [
        (
            "src/settings.yml",
            "sample",
            "sample_post_data.text breaks maxLength 3; make sample_post_data a request valid under "
            "TextClassifier.input_schema",
        )
    ]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "        return build_schema()",
            "TextClassifier.input_schema does not return a dict literal; return the JSON Schema as a literal "
            "(module-level constants allowed) so the check can read it without running the package",
        ),
        (
            '        return {"type": "banana"}',
            "TextClassifier.input_schema is not a valid JSON Schema (schema.type breaks the metaschema's anyOf); "
            "fix TextClassifier.input_schema in src/inference.py",
        ),
    ],
)
def test_an_unreadable_or_invalid_input_schema_is_refused(clean: Path, body: str, message: str) -> None:
    _wrapper_with_input_schema(clean, body)
    assert _findings(clean) == [("src/inference.py", "schema", message)]


def test_record_schema_without_quote_names_names_only_the_keyword() -> None:
    schema = RecordSchema(
        {"type": "object", "properties": {"label": {"enum": ["neg", "pos"]}}, "additionalProperties": False},
        name="output schema",
    )
    assert schema.problem({"label": "neg"}, "output[0]") is None
    assert schema.problem({"label": "neg", "secret text": 1}, "output[0]", quote_names=False) == (
        "output[0] breaks additionalProperties"
    )
    assert schema.problem({"label": "maybe"}, "output[0]") == 'output[0].label breaks enum ["neg", "pos"]'
    with pytest.raises(InvalidInputError, match="output schema is not a valid JSON Schema"):
        RecordSchema({"type": 3}, name="output schema")
