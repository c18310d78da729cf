"""What the OpenAPI document says of every endpoint alike: the Idempotency-Key header and the
problem+json error answers (core/problems.py)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from core.idempotency import HEADER
from core.problems import CONTENT_TYPE

# At most 255 characters, not blank (surrounding white space is not part of the key).
KEY_PATTERN = r"^\S(.{0,253}\S)?$"

IDEMPOTENCY_KEY = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    required=True,
    pattern=KEY_PATTERN,
    description=(
        "A key of the client's choosing (at most 255 characters). The same key and body replays "
        "the first answer (`Idempotent-Replayed: true`); another body with it is 422; a retry "
        "while the first request is in flight is 409. Keys are scoped per client."
    ),
)
OPTIONAL_IDEMPOTENCY_KEY = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Honoured when sent (see POST payments).",
)


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details, the body of every error answer."""

    type = serializers.CharField(help_text="A URI naming the problem; it ends in a short code.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(  # type: ignore[assignment]  # a field named like a stub attribute
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Per field (dotted path): what is wrong with it.",
    )


_WHY = {
    400: "Invalid request: malformed JSON, a field that fails validation, or a NUL byte.",
    401: "No or invalid credentials.",
    403: "The user may not do this.",
    404: "No such object, or one the user may not see.",
    409: "A conflict: the same Idempotency-Key is still in flight, or the id is not available.",
    413: "The body is larger than the platform accepts.",
    422: "Understood but refused (an Idempotency-Key reused with another body, an id with other content).",
    429: "Too many writes by this client; see Retry-After.",
}
_WHY.setdefault(405, "The method is not allowed here.")


def problems(*codes: int) -> dict[Any, OpenApiResponse]:
    """The error answers of an operation, each as `application/problem+json`."""
    return {
        (code, CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=_WHY[code]) for code in codes
    }


READ_PROBLEMS = (400, 401, 404)
WRITE_PROBLEMS = (400, 401, 403, 409, 413, 422, 429)


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ProblemAutoSchema(AutoSchema):
    """drf-spectacular's schema plus the problem answers every operation can give: 400 (a NUL
    byte or a bad parameter), 401 and 403; 404 where the path names an object; 413 and 429 on
    writes. An operation's own `problems(...)` declarations keep their descriptions."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        codes = [400, 401, 403]
        if "{" in self.path or self._is_list_view():  # an object's path, or a page past the end
            codes.append(404)
        if self.method in WRITE_METHODS:
            codes += [413, 429]
        declared = [int(code) for code in responses if code.isdigit() and int(code) >= 400]
        for code in sorted({*codes, *declared}):
            problem = self._get_response_for_code(
                OpenApiResponse(ProblemSerializer, description=_WHY.get(code, "")),
                str(code),
                [CONTENT_TYPE],
                direction,
            )
            existing = responses.get(str(code))
            if existing is None:
                responses[str(code)] = problem
            elif CONTENT_TYPE not in existing.get("content", {}):
                # Every error answer is problem+json, whatever the view declared.
                existing["content"] = problem["content"]
        return responses
