"""HTTP error bodies in OpenAI's shape (kept apart from the deployments, which Ray pickles)."""

from __future__ import annotations

from fastapi.responses import JSONResponse

RETRY_AFTER_S = 1


def error(status: int, message: str, param: str | None, kind: str = "invalid_request_error") -> JSONResponse:
    """OpenAI's error body (``{"error": {"message", "type", "param", "code"}}``); 503s carry Retry-After."""
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}},
                        status_code=status, headers=headers)
