"""Read the images of a score request: multipart fields named ``file``, or a raw body.

Only bytes that arrived in the request are ever returned; a text field is refused rather than
interpreted, so no request can make the server open a path of its own.
"""
from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from .limits import BodyHold, limited_stream

FIELD = "file"


@dataclass
class Upload:
    """One image as received: the client's name for it and its bytes."""

    filename: str
    data: bytes


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def read_multipart(request: Request, max_bytes: int, max_files: int,
                         hold: BodyHold | None = None) -> list[Upload]:
    """The files of the ``file`` fields, in order; 400/413 for what cannot be taken (503
    when ``hold``'s budget cannot take the body)."""
    parser = MultiPartParser(request.headers, limited_stream(request, max_bytes, hold),
                             max_files=max_files, max_fields=64)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        if str(e).startswith("Too many files"):
            raise HTTPException(413, f"too many files: at most {max_files} per request") from None
        raise HTTPException(400, f"malformed multipart body: {e}") from None
    try:
        uploads: list[Upload] = []
        for value in form.getlist(FIELD):
            if not isinstance(value, UploadFile):
                raise HTTPException(
                    400, f"multipart field '{FIELD}' must be a file part (with a filename in "
                         "its Content-Disposition), not text; the server never reads paths")
            uploads.append(Upload(value.filename or FIELD, await value.read()))
        if not uploads:
            got = sorted(set(form.keys()))
            raise HTTPException(
                400, f"no multipart field named '{FIELD}'"
                     + (f" (got: {', '.join(got)})" if got else ""))
        return uploads
    finally:
        await form.close()


async def read_raw(request: Request, max_bytes: int, filename: str | None,
                   hold: BodyHold | None = None) -> Upload:
    """The whole body as one image (any Content-Type: the format is read from the bytes)."""
    data = b"".join([chunk async for chunk in limited_stream(request, max_bytes, hold)])
    if not data:
        raise HTTPException(400, "empty request body: send the image as the body, or as "
                                 f"multipart/form-data fields named '{FIELD}'")
    return Upload(filename or "body", data)
