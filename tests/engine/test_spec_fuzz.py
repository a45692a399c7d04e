"""Hostile specs: 1,000+ seeded fuzzed specs and the named cases raise only the project's own errors."""
import math

import pytest

from cnn.core.errors import SpecError
from cnn.model.spec import ModelSpec, preset, validate
from tests.fuzz_specs import tally


@pytest.mark.parametrize("seed", [0, 1])
def test_fuzzed_specs_raise_only_project_errors(seed):
    kinds, escaped, examples = tally(seed, 1000)
    assert sum(kinds.values()) == 1000 and set(kinds) == {"text", "bytes", "dict"}
    assert not escaped, f"{dict(escaped)} escaped, e.g. {examples[:3]}"


def good() -> dict:
    return preset("default").to_dict()


@pytest.mark.parametrize("change, fragment", [
    ({"input_shape": [math.inf, 28, 1]}, "input_shape must be a whole number, got inf"),
    ({"input_shape": [28, 28]}, "input_shape must be 3 whole numbers"),
    ({"input_shape": [28, 28, 1, 1]}, "input_shape must be 3 whole numbers"),
    ({"input_shape": [10 ** 400, 28, 1]}, "far too large"),
    ({"num_classes": "ten"}, "num_classes must be a whole number, got 'ten'"),
    ({"num_classes": True}, "num_classes must be a whole number, got True"),
    ({"train": [["epochs", 3]]}, "train: expected a JSON object, got a list"),
    ({"train": "adam"}, "train: expected a JSON object, got a string"),
    ({"train": {"augmentation": None}}, "train.augmentation: expected a JSON object, got null"),
    ({"train": {"learning_rate": 10 ** 400}}, "learning_rate must be a number"),
    ({"train": {"epochs": "many"}}, "epochs must be a whole number, got 'many'"),
    ({"layers": [{"type": ["Dense"]}]}, "layer 1: unknown type ['Dense']"),
    ({"layers": [{"type": {"Dense": 1}}]}, "layer 1: unknown type"),
    ({"layers": "Conv2D"}, "'layers' must be a list, got a string"),
    ({"layers": [{"type": "Flatten"}] * 101}, "101 layers; the limit is 100"),
    ({"preset": "x" * 10_000}, "preset must be a name of at most 64 characters"),
    ({"layers": [{"type": "Conv2D", "filters": math.nan}, {"type": "Flatten"}]}, "filters must be a whole number"),
])
def test_named_hostile_values_get_spec_errors(change, fragment):
    with pytest.raises(SpecError) as err:
        ModelSpec.from_dict({**good(), **change})
    assert fragment in str(err.value) and len(str(err.value)) < 400


@pytest.mark.parametrize("text, fragment", [
    ('{"input_shape": [Infinity, 28, 1]}', "whole number, got inf"),
    ('{"num_classes": 1' + "0" * 5000 + "}", "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"train": {"learning_rate": NaN}}', None),  # parses; validate refuses the range
])
def test_hostile_json_text(text, fragment):
    if fragment is None:
        with pytest.raises(SpecError, match="learning_rate nan is outside"):
            validate(ModelSpec.from_json(text))
        return
    with pytest.raises(SpecError, match=fragment):
        ModelSpec.from_json(text)


def test_bytes_must_be_utf8_and_a_bom_is_fine():
    data = preset("lenet5").to_json().encode()
    assert ModelSpec.from_json(b"\xef\xbb\xbf" + data) == preset("lenet5")
    with pytest.raises(SpecError, match="byte 0xff at position 1 is not UTF-8"):
        ModelSpec.from_json(b"{\xff}")
    with pytest.raises(SpecError, match="the limit is 1 MB"):
        ModelSpec.from_json(b" " * 1_000_001)


def test_validate_refuses_wrong_types_set_by_code():
    spec = preset("default")
    spec.input_shape = (28, 28)
    with pytest.raises(SpecError, match="input shape"):
        validate(spec)
    spec = preset("default")
    spec.layers[0].filters = "16"
    with pytest.raises(SpecError, match="filters '16' is outside 1…1024"):
        validate(spec)
