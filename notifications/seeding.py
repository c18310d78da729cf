"""Seeding message templates from data migrations (any app's), with the migration's models."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# (key, locale) -> (email subject, email text, email HTML, SMS text, push title, push text)
TemplateTexts = Mapping[tuple[str, str], tuple[str, str, str, str, str, str]]


def template_seeder(templates: TemplateTexts, sample_context: Mapping[str, Any]) -> tuple[Callable, Callable]:
    """The forward and backward RunPython functions that add (never overwrite) an email, an SMS
    and a push template per (key, locale), and remove them again."""

    def seed(apps: Any, schema_editor: Any) -> None:
        template = apps.get_model("notifications", "Template")
        for (key, locale), (subject, text, html, sms, push_title, push_text) in templates.items():
            rows = {
                "email": {"subject": subject, "body": text, "html_body": html},
                "sms": {"subject": "", "body": sms, "html_body": ""},
                "push": {"subject": push_title, "body": push_text, "html_body": ""},
            }
            for channel, fields in rows.items():
                template.objects.get_or_create(
                    key=key,
                    channel=channel,
                    locale=locale,
                    defaults={**fields, "sample_context": dict(sample_context)},
                )

    def unseed(apps: Any, schema_editor: Any) -> None:
        keys = {key for key, _ in templates}
        apps.get_model("notifications", "Template").objects.filter(key__in=keys).delete()

    return seed, unseed
