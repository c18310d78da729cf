"""Templates: choosing one by key, channel and locale (with fallback) and rendering it.

Rendered with Django's template engine: the plain-text subject and body without autoescaping,
the HTML body with it, so a context value can never inject markup into an email.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.template import Context, Engine, TemplateSyntaxError

from notifications.models import Template


class TemplateNotFound(Exception):
    pass


class TemplateError(Exception):
    pass


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    body: str
    html_body: str
    locale: str


def normalise_locale(locale: str | None) -> str:
    return (locale or "").strip().replace("_", "-").lower()


def locale_chain(locale: str | None) -> list[str]:
    """The locales to try, most specific first: `fr-ca` -> fr-ca, fr, then the default locale."""
    chain: list[str] = []
    parts = normalise_locale(locale).split("-") if locale else []
    for i in range(len(parts), 0, -1):
        candidate = "-".join(parts[:i])
        if candidate and candidate not in chain:
            chain.append(candidate)
    for fallback in (normalise_locale(settings.NOTIFICATIONS_DEFAULT_LOCALE), "en"):
        if fallback not in chain:
            chain.append(fallback)
    return chain


def find_template(*, key: str, channel: str, locale: str | None) -> Template:
    chain = locale_chain(locale)
    found = {t.locale: t for t in Template.objects.filter(key=key, channel=channel, locale__in=chain)}
    for candidate in chain:
        if candidate in found:
            return found[candidate]
    raise TemplateNotFound(f"no {channel} template {key!r} for locales {chain}")


@cache
def _engine() -> Engine:
    return Engine(debug=False, libraries={}, builtins=None)


def render_string(source: str, context: dict[str, Any], *, autoescape: bool) -> str:
    if not source:
        return ""
    try:
        template = _engine().from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(str(exc)) from exc
    try:
        return template.render(Context(context, autoescape=autoescape))
    except (TemplateSyntaxError, ValueError, TypeError, AttributeError) as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from exc


def render_template(template: Template, context: dict[str, Any]) -> RenderedMessage:
    return RenderedMessage(
        # A subject is one line: a newline in a header would be rejected by the mail library.
        subject=" ".join(render_string(template.subject, context, autoescape=False).split()),
        body=render_string(template.body, context, autoescape=False).strip(),
        html_body=render_string(template.html_body, context, autoescape=True),
        locale=template.locale,
    )


def render(*, key: str, channel: str, locale: str | None, context: dict[str, Any]) -> RenderedMessage:
    return render_template(find_template(key=key, channel=channel, locale=locale), context)
