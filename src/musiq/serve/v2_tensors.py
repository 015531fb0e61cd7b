"""Open Inference Protocol ("v2") request bodies: the ``image`` input tensor to uploads, and
outcomes to the ``score``/``logits``/``error`` output tensors.

The JSON form carries each ``BYTES`` element as a base64 string of an encoded image file. The
binary tensor data extension (``Inference-Header-Content-Length``) carries the elements after
the JSON header as raw bytes, each preceded by its length (4 bytes, little-endian), as
Triton's clients send them. Every refusal is an ``HTTPException`` with a message naming the
field at fault; :mod:`musiq.serve.v2` answers it in the protocol's ``{"error": ...}`` form.
"""
from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass

from fastapi import HTTPException

from .uploads import Upload
from .work import Outcome

INPUT = "image"
OUTPUTS = ("score", "logits", "error")
BINARY_HEADER = "inference-header-content-length"


@dataclass
class InferRequest:
    """A parsed infer request: its images, the outputs asked for and the client's id."""

    uploads: list[Upload]
    outputs: tuple[str, ...]
    id: str | None


def bad(message: str) -> HTTPException:
    return HTTPException(400, message)


def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON header of the request as a dict, and the binary section after it (b'' when
    the request is pure JSON)."""
    binary = b""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise bad("Inference-Header-Content-Length is not an integer") from None
        if not 0 <= n <= len(body):
            raise bad(f"Inference-Header-Content-Length {n} is outside the body "
                      f"({len(body)} bytes)")
        body, binary = body[:n], body[n:]
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"malformed JSON in the request body: {e}") from None
    if not isinstance(request, dict):
        raise bad("the request body must be a JSON object with an 'inputs' list")
    return request, binary


def parse_infer(body: bytes, header_length: str | None, max_files: int) -> InferRequest:
    """Check an infer request and take its images; 400 for a malformed request, 413 for more
    than ``max_files`` images."""
    request, binary = split_body(body, header_length)
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise bad(f"'inputs' must be a list of exactly one tensor, named '{INPUT}'")
    tensor = inputs[0]
    if tensor.get("name") != INPUT:
        raise bad(f"unknown input {tensor.get('name')!r}: the only input is '{INPUT}'")
    if tensor.get("datatype") != "BYTES":
        raise bad(f"input '{INPUT}' must have datatype BYTES (encoded image files), "
                  f"not {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or len(shape) != 1 or not isinstance(shape[0], int)
            or isinstance(shape[0], bool) or shape[0] < 1):
        raise bad(f"input '{INPUT}' must have shape [N] with N >= 1 images, not {shape!r}")
    n = shape[0]
    if n > max_files:
        raise HTTPException(413, f"too many images: {n} in '{INPUT}', at most {max_files} "
                                 "per request")
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise bad(f"'parameters' of input '{INPUT}' must be an object")
    if "binary_data_size" in params:
        elements = binary_elements(binary, params["binary_data_size"], n)
    elif binary:
        raise bad(f"binary data after the JSON header but input '{INPUT}' has no "
                  "'binary_data_size' parameter")
    else:
        elements = json_elements(tensor.get("data"), n)
    return InferRequest([Upload(f"{INPUT}[{i}]", e) for i, e in enumerate(elements)],
                        requested_outputs(request), _request_id(request))


def json_elements(data: object, n: int) -> list[bytes]:
    """The ``n`` base64 strings of the JSON form, decoded."""
    if not isinstance(data, list) or len(data) != n:
        got = f"{len(data)} elements" if isinstance(data, list) else repr(type(data).__name__)
        raise bad(f"input '{INPUT}' has shape [{n}] but its 'data' is {got}; send a list of "
                  f"{n} base64 strings")
    out = []
    for i, element in enumerate(data):
        if not isinstance(element, str):
            raise bad(f"{INPUT}[{i}]: expected a base64 string, got "
                      f"{type(element).__name__}")
        try:
            # Line breaks (MIME-style base64) are allowed; any other non-alphabet byte is not.
            decoded = base64.b64decode("".join(element.split()), validate=True)
        except (binascii.Error, ValueError) as e:
            raise bad(f"{INPUT}[{i}]: not valid base64 ({e})") from None
        if not decoded:
            raise bad(f"{INPUT}[{i}]: empty element (no image bytes)")
        out.append(decoded)
    return out


def binary_elements(binary: bytes, size: object, n: int) -> list[bytes]:
    """The ``n`` length-prefixed elements of the binary section."""
    if not isinstance(size, int) or isinstance(size, bool) or size != len(binary):
        raise bad(f"'binary_data_size' of input '{INPUT}' is {size!r} but {len(binary)} "
                  "bytes follow the JSON header")
    out, pos = [], 0
    for i in range(n):
        if pos + 4 > len(binary):
            raise bad(f"{INPUT}[{i}]: the binary data ends before this element")
        (length,) = struct.unpack_from("<I", binary, pos)
        pos += 4
        if length == 0 or pos + length > len(binary):
            raise bad(f"{INPUT}[{i}]: element length {length} is empty or runs past the data")
        out.append(binary[pos:pos + length])
        pos += length
    if pos != len(binary):
        raise bad(f"{len(binary) - pos} bytes of binary data after the {n} elements of "
                  f"'{INPUT}'")
    return out


def requested_outputs(request: dict) -> tuple[str, ...]:
    """The outputs asked for by name (all of them when the request names none)."""
    wanted = request.get("outputs")
    if wanted is None:
        return OUTPUTS
    if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
        raise bad("'outputs' must be a list of objects with a 'name'")
    names = tuple(o.get("name") for o in wanted)
    unknown = [x for x in names if x not in OUTPUTS]
    if unknown:
        raise bad(f"unknown output(s) {unknown}; this model has: {', '.join(OUTPUTS)}")
    return names or OUTPUTS


def _request_id(request: dict) -> str | None:
    rid = request.get("id")
    if rid is not None and not isinstance(rid, str):
        raise bad("'id' must be a string")
    return rid


def output_tensors(outcomes: list[Outcome], num_classes: int,
                   names: tuple[str, ...]) -> list[dict]:
    """The output tensors for ``outcomes``: a failed image has ``null`` score and logits
    (NaN in a client's float array) and its message in ``error`` (``""`` when scored)."""
    n = len(outcomes)
    logits: list[float | None] = []
    for o in outcomes:
        logits.extend(o.logits if o.logits is not None else [None] * num_classes)
    tensors = {
        "score": {"name": "score", "datatype": "FP32", "shape": [n],
                  "data": [o.score if o.error is None else None for o in outcomes]},
        "logits": {"name": "logits", "datatype": "FP32", "shape": [n, num_classes],
                   "data": logits},
        "error": {"name": "error", "datatype": "BYTES", "shape": [n],
                  "data": [o.error or "" for o in outcomes]},
    }
    return [tensors[name] for name in names]
