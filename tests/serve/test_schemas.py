"""The declared schemas' messages: one per field, named as the client sent it, short."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bertkit.serve.schemas import EmbeddingsRequest, TASK_PARAMETERS, check_parameters, fields_of, validation_message


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
    parameters = TASK_PARAMETERS["text-classification"]
    assert message(parameters, {"top-k": 2}, ("parameters",)) == (
        "parameters.top-k: unknown field (did you mean 'top_k'?); accepted: top_k, text_pair")
    long_key = "k" * 10_000
    text = message(parameters, {long_key: 1}, ("parameters",))
    assert text.startswith("parameters.kkk") and len(text) < 200
    assert message(EmbeddingsRequest, {"input": "a", "list[str]": 1}).startswith("list[str]: unknown field")


def test_parameters_keep_only_what_the_client_sent():
    assert check_parameters("question-answering", {"top_k": None}, "q") == {"top_k": None}
    assert check_parameters("feature-extraction", {}, ["a", "b"]) == {}
    with pytest.raises(ValueError, match="a second text goes with one input"):
        check_parameters("feature-extraction", {"text_pair": "b"}, ["a"])
