"""The declared schemas' messages: one per field, named as the client sent it, short."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from serve.fake_pipeline import FakePipeline

from bertkit.errors import ConfigError
from bertkit.serve.schemas import EmbeddingsRequest, check_parameters, fields_of, parameters_model, validation_message
from bertkit.tasks import registry


def message(model, body: dict, prefix: tuple = ()) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return validation_message(caught.value.errors(), fields_of(model), prefix)


def test_a_union_field_is_one_message_saying_what_it_takes():
    assert message(EmbeddingsRequest, {"input": [1, "a"]}) == (
        "input: expected a non-empty text, a list of them, or word-piece ids (a list of ints, or a list of such lists), "
        "got [1, 'a']")
    assert message(EmbeddingsRequest, {"input": "a", "dimensions": 0}) == (
        "dimensions: input should be greater than or equal to 1, got 0")


def test_unknown_keys_are_named_short_with_the_accepted_ones():
    parameters = parameters_model(registry.get("text-classification").pipeline.parameters)
    assert message(parameters, {"top-k": 2}, ("parameters",)) == (
        "parameters.top-k: unknown field (did you mean 'top_k'?); accepted: top_k, text_pair")
    long_key = "k" * 10_000
    text = message(parameters, {long_key: 1}, ("parameters",))
    assert text.startswith("parameters.kkk") and len(text) < 200
    assert message(EmbeddingsRequest, {"input": "a", "list[str]": 1}).startswith("list[str]: unknown field")


def test_parameters_keep_only_what_the_client_sent():
    assert check_parameters(FakePipeline("question-answering"), {"top_k": None}, "q") == {"top_k": None}
    assert check_parameters(FakePipeline("feature-extraction"), {}, ["a", "b"]) == {}
    with pytest.raises(ConfigError, match="a second text goes with one input"):
        check_parameters(FakePipeline("feature-extraction"), {"text_pair": "b"}, ["a"])


def test_every_registered_pipeline_declares_its_parameters_and_they_are_strict():
    for spec in registry.tasks():
        model = parameters_model(spec.pipeline.parameters)
        assert set(model.model_fields) <= set(spec.pipeline.parameters.__dataclass_fields__)
    fill_mask = parameters_model(registry.get("fill-mask").pipeline.parameters)
    assert "top_k: input should be less than or equal to 100" in message(fill_mask, {"top_k": 101})
    assert "top_k: input should be a valid integer" in message(fill_mask, {"top_k": "5"})
    qa = parameters_model(registry.get("question-answering").pipeline.parameters)
    assert qa.model_validate({"top_k": None}).top_k is None  # null, or a count in bounds
    assert "top_k: input should be greater than or equal to 1" in message(qa, {"top_k": 0})
    choices = parameters_model(registry.get("multiple-choice").pipeline.parameters)
    assert "choices: list should have at least 2 items" in message(choices, {"choices": ["a"]})
