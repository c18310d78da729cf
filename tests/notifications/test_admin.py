"""The notifications admin: template preview (rendered, autoescaped), the resend action, and a
notification's view-only page."""

from __future__ import annotations

import pytest
from django.test import Client

from bridge.models import OutboxEvent
from core.admin_display import utc_seconds
from notifications.models import Notification, Template

pytestmark = pytest.mark.django_db


def test_template_preview_renders_the_sample_context_escaped(admin_client: Client) -> None:
    template = Template.objects.create(
        key="preview_test",
        channel="email",
        locale="de",
        subject="Zahlung {{ amount }} {{ currency }}",
        body="Danke für {{ description }}",
        html_body="<p>Danke für {{ description }}</p>",
        sample_context={"amount": "5.00", "currency": "EUR", "description": "<script>x</script>"},
    )
    page = admin_client.get(f"/admin/notifications/template/{template.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Zahlung 5.00 EUR" in html
    # In the iframe's srcdoc the rendered HTML is escaped once by the template engine and once
    # more as an attribute value: no live <script> reaches the admin page.
    assert "&amp;lt;script&amp;gt;" in html and "<script>x</script>" not in html


def test_template_preview_shows_a_syntax_error(admin_client: Client) -> None:
    template = Template.objects.create(key="broken", channel="sms", locale="en", body="{% if %}")
    page = admin_client.get(f"/admin/notifications/template/{template.pk}/change/")
    assert "Cannot render" in page.content.decode()


def test_resend_action_queues_a_failed_notification_again(admin_client: Client) -> None:
    notification = Notification.objects.create(
        notification_id="adm-1",
        channel="email",
        recipient="a@example.com",
        status="failed",
        failure_reason="retries_exhausted",
        attempts=3,
        retry_step=3,
    )
    answer = admin_client.post(
        "/admin/notifications/notification/",
        {"action": "resend", "_selected_action": [notification.pk]},
        follow=True,
    )
    assert answer.status_code == 200
    notification.refresh_from_db()
    assert notification.status == "queued" and notification.retry_step == 0 and notification.next_attempt_at
    assert notification.failure_reason == "" and notification.claim is not None
    assert OutboxEvent.objects.filter(topic="audit.notification-events", key="adm-1").exists()


def test_resend_action_refuses_one_in_flight(admin_client: Client) -> None:
    from django.utils import timezone

    notification = Notification.objects.create(
        notification_id="adm-2",
        channel="sms",
        recipient="+15550001",
        status="sending",
        next_attempt_at=timezone.now(),
    )
    answer = admin_client.post(
        "/admin/notifications/notification/",
        {"action": "resend", "_selected_action": [notification.pk]},
        follow=True,
    )
    assert "is sending" in answer.content.decode()
    notification.refresh_from_db()
    assert notification.status == "sending"


def test_a_notification_page_is_view_only_with_its_context_folded_and_times_to_the_second(
    admin_client: Client,
) -> None:
    notification = Notification.objects.create(
        notification_id="adm-page",
        channel="email",
        recipient="a@example.com",
        status="failed",
        context={"name": "<b>Ada</b>"},
    )
    page = admin_client.get(f"/admin/notifications/notification/{notification.pk}/change/").content.decode()
    assert 'name="_save"' not in page and "Close" in page
    assert utc_seconds(notification.created_at) in page
    assert "&lt;b&gt;Ada&lt;/b&gt;" in page and "<b>Ada</b>" not in page
    assert 'id="delivery_attempts-group"' not in page  # no delivery attempts yet: no empty table
