"""The API's exception handler: problem+json for every error, an audit record per failed login."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.response import Response

from audit import services
from core import problems

# Set on a request whose failure Django's user_login_failed signal already recorded.
RECORDED_FLAG = "_audit_auth_failure_recorded"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    request = context.get("request")
    if isinstance(exc, exceptions.AuthenticationFailed) and request is not None:
        django_request = getattr(request, "_request", request)
        if not getattr(request, RECORDED_FLAG, False) and not getattr(django_request, RECORDED_FLAG, False):
            services.auth_failure_record(
                channel="api",
                username=None,
                remote_addr=django_request.META.get("REMOTE_ADDR"),
                path=django_request.path,
                reason=str(exc.detail),
            )
    return problems.exception_handler(exc, context)
