"""The OpenAPI side of the routes: answer models and what ``POST /v1/score`` declares
(bodies and error answers), as ``/openapi.json`` and ``/docs`` show them."""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel


class ScoreEntry(BaseModel):
    filename: str
    score: Optional[float]
    error: Optional[str]
    distribution: Optional[list[float]] = None
    std: Optional[float] = None
    top5: Optional[list[dict]] = None


class ScoreAnswer(BaseModel):
    model: str
    kind: str
    score_range: Optional[list[float]]
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
    400: "malformed request", 401: "missing or wrong API key", 404: "unknown model",
    403: "Host or Origin not allowed", 408: "the body did not arrive within the limit",
    413: "body or file count above the limit", 415: "raw body: not an image format",
    422: "raw body: an image that cannot be scored",
    503: "busy: the image queue or the memory for request bodies is full (see "
         "Retry-After), or out of memory",
    504: "the request took longer than the timeout"}.items()}
