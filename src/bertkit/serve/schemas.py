"""The declared request bodies of every route and the parameters of every task.

Types are strict ("normalize": "false" is not a boolean, 1.0 is not a count) and unknown fields
are refused, so a request either means exactly one thing or gets a 422 naming the field and what
it accepts; FastAPI documents the same models on /docs and /openapi.json.

Each task's parameters (its pipeline's call options, top_k, normalize, ..., and the keyword inputs
of its parse, text_pair, context, choices, ...) are declared by its pipeline in the task's module,
as a dataclass; `parameters_model` makes the strict model of it that the server validates with.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, create_model
from pydantic.json_schema import WithJsonSchema

from bertkit.tasks import registry

Count = Annotated[StrictInt, Field(ge=1)]
TokenIds = Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- each task's parameters: declared by its pipeline (tasks/*.py), made strict here -------------

def _bounded(kind, bounds: dict):
    """`kind` with its bounds on each member but None (`int | None` with ge=1: null, or an int >= 1)."""
    if not bounds:
        return kind
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return typing.Union[tuple(member if member is type(None) else Annotated[member, Field(**bounds)]
                                  for member in typing.get_args(kind))]
    return Annotated[kind, Field(**bounds)]


@functools.cache
def parameters_model(declared: type) -> type[_Strict]:
    """A pipeline's `parameters` dataclass as a strict pydantic model (a text is not a bool, 1.0 not
    a count, an unknown field is refused), with each field's description and bounds."""
    hints = typing.get_type_hints(declared)
    fields = {f.name: (_bounded(hints[f.name], f.metadata.get("bounds", {})),
                       Field(f.default, description=f.metadata.get("description") or None))
              for f in dataclasses.fields(declared)}
    return create_model(declared.__name__, __base__=_Strict, __doc__=declared.__doc__, **fields)


# OpenAPI: /predict's parameters are one of these, by the model's task.
_PARAMETERS_SCHEMA = WithJsonSchema({
    "description": "the pipeline's options and keyword inputs, by the model's task (see GET /info)",
    "anyOf": [{**parameters_model(spec.pipeline.parameters).model_json_schema(), "title": spec.name}
              for spec in registry.tasks() if spec.pipeline.parameters is not None]})
Parameters = Annotated[dict[str, Any], _PARAMETERS_SCHEMA]


def check_parameters(p, parameters: dict, inputs: Any) -> dict:
    """The parameters the client gave, checked against pipeline `p`'s declared ones (pydantic's
    ValidationError if they do not fit, a ConfigError if they do not go with the inputs); the
    fields it did not send are left to the pipeline's defaults."""
    if p.parameters is None:  # a pipeline that declares none: its parse checks
        return parameters
    checked = parameters_model(p.parameters).model_validate(parameters).model_dump(exclude_unset=True)
    p.check_parameters(checked, inputs)
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
