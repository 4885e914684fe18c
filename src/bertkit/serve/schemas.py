"""The declared request bodies of every route and the parameters of every task.

Types are strict ("normalize": "false" is not a boolean, 1.0 is not a count) and unknown fields
are refused, so a request either means exactly one thing or gets a 422 naming the field and what
it accepts; FastAPI documents the same models on /docs and /openapi.json.

The per-task parameter models live here, keyed by the pipeline's task name, until the task
modules declare their own: they list each pipeline's call options (top_k, normalize, ...) and the
keyword inputs of its parse (text_pair, context, choices, ...).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic.json_schema import WithJsonSchema

from bertkit.extract_features import POOLINGS

Count = Annotated[StrictInt, Field(ge=1)]
TokenIds = Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- each task's parameters --------------------------------------------------------------------

class FeatureExtractionParameters(_Strict):
    """feature-extraction: how the token vectors become one sentence vector."""

    # No default here: the pipeline's comes from the checkpoint's files (sent nothing: that one).
    pooling: Literal[POOLINGS] = Field(None, description="default: the checkpoint's (1_Pooling/config.json)")
    normalize: StrictBool = Field(None, description="L2-normalise (default: the checkpoint's modules.json)")
    text_pair: StrictStr | None = Field(None, description="a second text, packed after the input (one input only)")


class TextClassificationParameters(_Strict):
    top_k: Count | None = Field(1, description="how many labels, best first; null for every label")
    text_pair: StrictStr | list[StrictStr] | None = Field(
        None, description="the second text of the pair: a text for one input, a list as long as the inputs for a list")


class TokenClassificationParameters(_Strict):
    doc_stride: Count | None = Field(None, description="token overlap of the windows of a text longer than the model")
    aggregate: StrictBool = Field(True, description="group word tags into entities (false: one answer per word)")


class QuestionAnsweringParameters(_Strict):
    question: StrictStr | None = Field(None, description="the question, when inputs holds none")
    context: StrictStr | None = Field(None, description="the text to find the answer in")
    doc_stride: Count = Field(128, description="default: the checkpoint's")
    max_query_length: Count = Field(64, description="default: the checkpoint's")
    max_answer_length: Count = 30
    n_best_size: Annotated[StrictInt, Field(ge=1, le=100)] = 20
    top_k: Annotated[StrictInt, Field(ge=1, le=100)] | None = Field(1, description="answers per question; null: the n best")


class MultipleChoiceParameters(_Strict):
    question: StrictStr | None = None
    choices: Annotated[list[StrictStr], Field(min_length=2)] | None = Field(None, description="at least two texts")


class FillMaskParameters(_Strict):
    # Each candidate carries its decoded sequence: the bound keeps one request's answer small.
    top_k: Annotated[StrictInt, Field(ge=1, le=100)] = Field(5, description="fillers per [MASK]")


TASK_PARAMETERS: dict[str, type[_Strict]] = {
    "feature-extraction": FeatureExtractionParameters,
    "text-classification": TextClassificationParameters,
    "token-classification": TokenClassificationParameters,
    "question-answering": QuestionAnsweringParameters,
    "multiple-choice": MultipleChoiceParameters,
    "fill-mask": FillMaskParameters,
}

# OpenAPI: /predict's parameters are one of these, by the model's task.
_PARAMETERS_SCHEMA = WithJsonSchema({
    "description": "the pipeline's options and keyword inputs, by the model's task (see GET /info)",
    "anyOf": [{**model.model_json_schema(), "title": task} for task, model in TASK_PARAMETERS.items()]})
Parameters = Annotated[dict[str, Any], _PARAMETERS_SCHEMA]


def check_parameters(task: str, parameters: dict, inputs: Any) -> dict:
    """The parameters the client gave, checked against the task's model (pydantic's ValidationError
    if they do not fit, ValueError if they do not go with the inputs); the fields it did not send
    are left to the pipeline's defaults."""
    model = TASK_PARAMETERS.get(task)
    if model is None:  # a task this server has no declared schema for: the pipeline checks
        return parameters
    checked = model.model_validate(parameters).model_dump(exclude_unset=True)
    if task == "feature-extraction" and checked.get("text_pair") is not None and isinstance(inputs, list):
        raise ValueError("parameters.text_pair: a second text goes with one input (inputs a text), not with a list "
                         "of inputs; send one request per pair")
    return checked


# -- the routes' bodies ------------------------------------------------------------------------

EmbeddingInput = Union[StrictStr, list[StrictStr], TokenIds, list[TokenIds]]


class EmbeddingsRequest(_Strict):
    """OpenAI's POST /v1/embeddings."""

    input: EmbeddingInput = Field(description="a text, a list of texts, or word-piece ids (one list, or a list of lists)")
    model: StrictStr | None = Field(None, description="a served model's name; a single-model server takes any name")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Count | None = None
    user: StrictStr | None = None
    truncate: StrictBool = Field(True, description="cut inputs longer than the model (false: 413)")


class EmbedRequest(_Strict):
    """text-embeddings-inference's POST /embed."""

    inputs: EmbeddingInput
    normalize: StrictBool = True
    truncate: StrictBool = Field(False, description="cut inputs longer than the model (false: 413)")
    model: StrictStr | None = None


class RerankRequest(_Strict):
    """text-embeddings-inference's POST /rerank, for a cross-encoder (one score per pair)."""

    query: StrictStr
    texts: Annotated[list[StrictStr], Field(min_length=1)]
    raw_scores: StrictBool = Field(False, description="the model's logit (false: its sigmoid)")
    return_text: StrictBool = False
    truncate: StrictBool = False
    model: StrictStr | None = None


class PredictRequest(_Strict):
    inputs: Any = Field(None, description="the pipeline's first argument: a text, a list, or the task's records")
    parameters: Parameters = Field(default_factory=dict)
    model: StrictStr | None = None
    truncate: StrictBool = True


class TokenizeRequest(_Strict):
    inputs: Any = None
    parameters: Parameters = Field(default_factory=dict)
    model: StrictStr | None = None


# -- messages ----------------------------------------------------------------------------------

# What a field of several shapes takes, for the message when a value fits none of them.
_EXPECTED = {
    "input": "a non-empty text, a list of them, or word-piece ids (a list of ints, or a list of such lists)",
    "inputs": "a non-empty text, a list of them, or word-piece ids (a list of ints, or a list of such lists)",
    "text_pair": "a text (for one input) or a list of texts as long as the inputs",
}
_TYPE_NAMES = {"str", "int", "bool", "float", "list", "dict", "none"}


def _union_member(loc: tuple) -> int | None:
    """Where pydantic names a union's member by its type ("list[str]") in an error's location:
    right after one of the union fields (a client's own key may look like a type name too)."""
    return next((i for i in range(1, len(loc)) if loc[i - 1] in _EXPECTED and isinstance(loc[i], str)
                 and ("[" in loc[i] or "-" in loc[i] or loc[i] in _TYPE_NAMES)), None)


def _name(part) -> str:
    text = str(part)  # a client's key: it can be megabytes too
    return text if len(text) <= 60 else f"{text[:57]}..."


def brief(value: Any) -> str:
    """A client's value quoted in a message, short (a hostile value can be megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def validation_message(errors: list[dict], fields: dict[tuple, list[str]], prefix: tuple = ()) -> str:
    """pydantic's errors as one line naming each field as the client sent it (`prefix` first) and
    what it accepts; `fields` lists the accepted names at each level, for unknown fields."""
    messages: dict[str, str] = {}
    for error in errors:
        loc = tuple(part for part in error["loc"] if part != "body")
        tagged = _union_member(loc)
        path = loc if tagged is None else loc[:tagged]
        where = ".".join(map(_name, (*prefix, *path))) or "body"
        if where in messages:
            continue  # one message per field: a union's members each add an error
        if tagged is not None:
            messages[where] = f"{where}: expected {_EXPECTED.get(str(path[-1]), 'another type')}"
            if len(loc) == tagged + 1:  # the member's error is about the whole value
                messages[where] += f", got {brief(error['input'])}"
        elif error["type"] == "extra_forbidden":
            known = fields.get(path[:-1], [])
            close = difflib.get_close_matches(str(path[-1]), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            messages[where] = f"{where}: unknown field{hint}; accepted: {', '.join(known) or 'none'}"
        elif error["type"] == "missing":
            messages[where] = f"{where}: required"
        else:
            messages[where] = f"{where}: {error['msg'][0].lower()}{error['msg'][1:]}, got {brief(error.get('input'))}"
    return "; ".join(messages.values())


def fields_of(model: type[BaseModel], prefix: tuple = ()) -> dict[tuple, list[str]]:
    return {prefix: list(model.model_fields)}
