"""The API's one error edge: every error answer is RFC 9457 `application/problem+json`.

Views and services raise (DRF exceptions, `Problem`, a domain exception with a code); the DRF
exception handler here turns each into one body shape:
`{"type", "title", "status", "detail", "errors": {field: [messages]}}` plus any extension members.
The middleware answers what never reaches a view the same way: a body over the size limit (413),
a NUL byte in the path, the query or the body (400; PostgreSQL text cannot hold one), and an
unhandled exception under `/api/` (500 without a traceback).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from pydantic import ValidationError as PydanticValidationError
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from core.codec import contains_nul

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://kafka-platform.dev/problems/"


class Problem(exceptions.APIException):
    """An error with its status, a short code (the problem type) and extension members."""

    def __init__(self, status_code: int, detail: str, *, code: str | None = None, **extensions: Any) -> None:
        self.status_code = status_code
        self.extensions = extensions
        super().__init__(detail=detail, code=code or HTTPStatus(status_code).phrase.lower().replace(" ", "_"))


def _type_uri(code: str | None) -> str:
    return f"{TYPE_BASE}{code}" if code else "about:blank"


def problem_body(status_code: int, detail: str, *, code: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": _type_uri(code),
        "title": HTTPStatus(status_code).phrase,
        "status": status_code,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


# What pydantic puts before the message of a ValueError raised by a validator.
VALUE_ERROR_PREFIX = "Value error, "


def pydantic_errors(exc: PydanticValidationError) -> dict[str, list[str]]:
    """A pydantic validation error as RFC 9457 `errors`: field path -> messages (no input echoed).

    A validator of the whole model that raises an error with a `loc` (core.money.MoneyFieldError)
    has it filed under that field; pydantic's "Value error, " prefix is left out."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        message = error["msg"]
        cause = (error.get("ctx") or {}).get("error")
        cause_loc = getattr(cause, "loc", None)
        if isinstance(cause_loc, tuple):
            loc, message = (*loc, *cause_loc), str(cause)
        elif error["type"] == "value_error" and message.startswith(VALUE_ERROR_PREFIX):
            message = message[len(VALUE_ERROR_PREFIX) :]
        field = ".".join(str(part) for part in loc) or "body"
        errors.setdefault(field, []).append(message)
    return errors


def _merge(into: dict[str, list[str]], more: dict[str, list[str]]) -> None:
    for field, messages in more.items():
        into.setdefault(field, []).extend(messages)


def _flatten(detail: Any, path: str = "") -> dict[str, list[str]]:
    """DRF's nested ValidationError detail as `{"field.sub": [messages]}` (`body` for the whole)."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "body" if key == api_settings.NON_FIELD_ERRORS_KEY else str(key)
            _merge(out, _flatten(value, f"{path}.{name}" if path else name))
    elif isinstance(detail, list):
        for index, item in enumerate(detail):
            _merge(out, _flatten(item, f"{path}.{index}" if isinstance(item, dict) else path))
    else:
        out[path or "body"] = [str(detail)]
    return out


def _as_api_exception(exc: Exception) -> Exception:
    if isinstance(exc, PydanticValidationError):
        return Problem(400, "The request is invalid.", code="validation_error", errors=pydantic_errors(exc))
    if isinstance(exc, RequestDataTooBig):
        return Problem(413, "The request body is larger than the platform accepts.", code="too_large")
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied()
    return exc


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler (status, headers such as Retry-After and WWW-Authenticate), then one body shape."""
    exc = _as_api_exception(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not an API error: Django's 500 path (ProblemMiddleware answers under /api/)
    code: str | None = None
    extensions: dict[str, Any] = {}
    if isinstance(exc, Problem):
        code = getattr(exc.detail, "code", None)
        extensions = dict(exc.extensions)
        detail = str(exc.detail)
    elif isinstance(exc, exceptions.ValidationError):
        code = "validation_error"
        extensions["errors"] = _flatten(exc.detail)
        detail = "The request is invalid."
    elif isinstance(exc, exceptions.APIException):
        code = exc.default_code
        detail = str(exc.detail) if not isinstance(exc.detail, (dict, list)) else str(exc.default_detail)
    else:  # pragma: no cover - drf_exception_handler handles only APIException, Http404, PermissionDenied
        detail = str(exc)
    response.data = problem_body(response.status_code, detail, code=code, **extensions)
    response.content_type = CONTENT_TYPE
    request = context.get("request")
    if request is not None:
        # An error is a problem document whatever format the request asked for (e.g. CSV).
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = CONTENT_TYPE
    return response


def problem_response(status_code: int, detail: str, *, code: str | None = None, **extra: Any) -> HttpResponse:
    """A problem+json answer outside DRF (middleware, Django's own error views)."""
    return JsonResponse(
        problem_body(status_code, detail, code=code, **extra), status=status_code, content_type=CONTENT_TYPE
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """`handler404`: a path under /api/ that no route matches (say a payment id with a dot, which
    the router's id pattern refuses) is a problem document like every other API error; elsewhere
    (the admin, a browser) Django's own page. With DEBUG on, Django shows its debug page instead."""
    if request.path.startswith("/api/"):
        return problem_response(status.HTTP_404_NOT_FOUND, "No API endpoint has this path.", code="not_found")
    return page_not_found(request, exception or Http404())


class ProblemMiddleware:
    """Refuses what no view should see (oversized bodies, NUL bytes) and answers API crashes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        return self.get_response(request)

    def _refusal(self, request: HttpRequest) -> HttpResponse | None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return problem_response(400, "Content-Length is not a number.", code="bad_request")
        if limit is not None and length > limit:
            return problem_response(
                413, f"The request body is larger than {limit} bytes.", code="too_large", limit=limit
            )
        raw_path = request.META.get("PATH_INFO", "").encode("utf-8", "surrogateescape")
        query = request.META.get("QUERY_STRING", "").encode("latin-1", "replace")
        if b"\x00" in raw_path or b"\x00" in unquote_to_bytes(request.get_full_path().split("?")[0]):
            return problem_response(400, "The path contains a NUL byte.", code="nul_byte")
        if b"\x00" in unquote_to_bytes(query.replace(b"+", b" ")):
            return problem_response(400, "The query contains a NUL byte.", code="nul_byte")
        if length and request.method in {"POST", "PUT", "PATCH", "DELETE"}:
            try:
                body = request.body
            except RequestDataTooBig:
                return problem_response(413, "The request body is too large.", code="too_large")
            if contains_nul(body):
                return problem_response(400, "The body contains a NUL byte.", code="nul_byte")
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith("/api/"):
            return None
        if isinstance(exception, RequestDataTooBig):
            return problem_response(413, "The request body is too large.", code="too_large")
        if settings.DEBUG:
            return None  # the developer's debug page
        logger.error("api request failed", exc_info=(type(exception), exception, exception.__traceback__))
        return problem_response(
            status.HTTP_500_INTERNAL_SERVER_ERROR, "The platform failed to answer.", code="internal_error"
        )
