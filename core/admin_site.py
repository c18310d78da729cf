"""The admin site: its start page lists what needs an operator's or auditor's attention."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse


@dataclass(frozen=True)
class Attention:
    """One thing to look at: how many, what it means, and where to go."""

    label: str
    count: int
    url: str
    detail: str = ""


AttentionCheck = Callable[[HttpRequest], Attention | None]

# Each returns None when the user may not see that kind of thing. The apps register theirs with
# `register_attention` from their AppConfig.ready() (core imports no app), each with a place on
# the page: lower comes first.
ATTENTION_CHECKS: dict[AttentionCheck, int] = {}


def register_attention(check: AttentionCheck, *, place: int = 100) -> None:
    """Add an app's item to the start page (once, however often its ready() runs)."""
    ATTENTION_CHECKS[check] = place


def attention_for(request: HttpRequest) -> list[Attention]:
    ordered = sorted(ATTENTION_CHECKS.items(), key=lambda entry: entry[1])
    return [item for check, _place in ordered if (item := check(request)) is not None]


class PlatformAdminSite(admin.AdminSite):
    site_header = "kafka-platform"
    site_title = "kafka-platform admin"
    index_title = "Operations"
    index_template = "admin/platform_index.html"

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        extra_context = {**(extra_context or {}), "attention": attention_for(request)}
        return super().index(request, extra_context)
