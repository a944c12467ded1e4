"""The hub's 422 answer to a request that fails validation: FastAPI's own, but always encodable.

FastAPI's answer echoes the offending input, and Python's JSON reader takes two things no JSON
answer can carry: a lone surrogate (`"\\ud800"`: a str UTF-8 cannot encode) and `NaN` / `Infinity`
(floats a JSON writer refuses). Either made FastAPI's answer a 500, for any body. Here a surrogate
is shown as U+FFFD and such a float as its name in a string, and the answer is the usual 422.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(value: Any) -> Any:
    """`value` (JSON-like) with every surrogate in its strings, keys included, made U+FFFD and
    every NaN or infinity a string ("nan", "inf", "-inf")."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {encodable(k): encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encodable(v) for v in value]
    return value


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 answer (`{"detail": [errors]}`), encodable whatever the input was."""
    return JSONResponse(status_code=422, content={"detail": encodable(jsonable_encoder(exc.errors()))})
