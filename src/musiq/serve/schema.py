"""The OpenAPI side of the routes: answer models and what ``POST /v1/score`` declares
(bodies and error answers), as ``/openapi.json`` and ``/docs`` show them."""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field


class ModelResult(BaseModel):
    """One model's result for one file, in a several-model answer."""

    score: Optional[float]
    error: Optional[str] = Field(description="this model's failure (the file was decoded)")
    distribution: Optional[list[float]] = None
    std: Optional[float] = None
    top5: Optional[list[dict]] = None


class ScoreEntry(BaseModel):
    filename: str
    score: Optional[float] = Field(description="the model's score; with several models, the "
                                               "first model's (null where it failed)")
    error: Optional[str] = Field(description="why the file was not scored; with several "
                                             "models, a failure before any model ran (the "
                                             "file could not be decoded)")
    distribution: Optional[list[float]] = None
    std: Optional[float] = None
    top5: Optional[list[dict]] = None
    models: Optional[dict[str, ModelResult]] = Field(
        None, description="several models only: every model's result, in the order asked")


class ModelSummary(BaseModel):
    """What one model of a several-model answer gives."""

    kind: str
    score_range: Optional[list[float]]


class ScoreAnswer(BaseModel):
    model: str = Field(description="the model; with several, the first one named")
    kind: str
    score_range: Optional[list[float]]
    models: Optional[dict[str, ModelSummary]] = Field(
        None, description="several models only (`model=a,b` or `model=all`): each model's "
                          "kind and score range, in the order asked")
    results: list[ScoreEntry]


class ErrorAnswer(BaseModel):
    detail: str


class HealthAnswer(BaseModel):
    status: str
    models: list[str]
    detail: Optional[str] = None


#: The request bodies /v1/score takes: multipart ``file`` parts (at least one), or a raw image.
SCORE_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "array", "minItems": 1,
                                "items": {"type": "string", "format": "binary"}}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
}}}

#: Error answers of /v1/score: status -> the documented reason.
SCORE_ERRORS = {code: {"model": ErrorAnswer, "description": text} for code, text in {
    400: "malformed request, or a model named twice or empty in `model`",
    401: "missing or wrong API key", 404: "unknown model",
    403: "Host or Origin not allowed", 408: "the body did not arrive within the limit",
    413: "body or file count above the limit", 415: "raw body: not an image format",
    422: "raw body: an image that cannot be scored",
    503: "busy: the image queue or the memory for request bodies is full (see "
         "Retry-After), or out of memory",
    504: "the request took longer than the timeout"}.items()}
