"""Fixtures of the notification flow tests: real SMTP and HTTP receivers, and the stack's worker
restarted once with settings pointing at them and short schedules."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pytest
import redis
from django.test import override_settings

from notifications import protection
from tests.conftest import TEST_REDIS_URL, Stack
from tests.support.clean_slate import reseed as seed_rows
from tests.support.receivers import HttpReceiver, SmtpReceiver

PLATFORM_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
TWILIO_SID = "ACtest0000000000000000000000000000"
TWILIO_TOKEN = "test-auth-token"  # noqa: S105 - the fake Twilio's
SMS_FROM = "+15550001111"
DISPATCH_INTERVAL_US = 300_000

# What the worker runs with in these tests (docs/settings.md, Notifications, lists them).
RETRY_SCHEDULE = [0.5, 0.5, 0.5]
DISABLE_AFTER = 2
BREAKER_THRESHOLD = 3
BREAKER_COOLDOWN_S = 3.0
RATE_BURST = 3
RATE_PER_MINUTE = 30.0  # a token every 2 s
STUCK_AFTER_S = 6.0


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def notification_stack(
    stack: Stack, smtp: SmtpReceiver, http_receiver: HttpReceiver, django_db_blocker: pytest.FixtureRequest
) -> Stack:
    """The stack with its worker restarted to deliver to the test's receivers."""
    stack.env.update(
        {
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp.port),
            "EMAIL_TIMEOUT": "3",
            "DEFAULT_FROM_EMAIL": "payments@kafka-platform.test",
            "NOTIFICATIONS_SMS_PROVIDER": "notifications.providers.twilio.TwilioSmsProvider",
            "TWILIO_BASE_URL": http_receiver.base_url,
            "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "SMS_FROM_NUMBER": SMS_FROM,
            "NOTIFICATIONS_PUSH_PROVIDER": "notifications.providers.expo.ExpoPushProvider",
            "EXPO_PUSH_URL": f"{http_receiver.base_url}/--/api/v2/push/send",
            "NOTIFICATIONS_PROVIDER_TIMEOUT_S": "3",
            "WEBHOOK_SIGNING_SECRET": PLATFORM_SECRET,
            "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "WEBHOOK_TIMEOUT_S": "2",
            "WEBHOOK_RETRY_SCHEDULE": ",".join(map(str, RETRY_SCHEDULE)),
            "NOTIFICATIONS_RETRY_SCHEDULE": "0.5,0.5,0.5,0.5,0.5",
            "WEBHOOK_DISABLE_AFTER_FAILURES": str(DISABLE_AFTER),
            "NOTIFICATIONS_BREAKER_FAILURE_THRESHOLD": str(BREAKER_THRESHOLD),
            "NOTIFICATIONS_BREAKER_COOLDOWN_S": str(BREAKER_COOLDOWN_S),
            "NOTIFICATIONS_RATE_LIMIT_BURST": str(RATE_BURST),
            "NOTIFICATIONS_RATE_LIMIT_PER_MINUTE": str(RATE_PER_MINUTE),
            "NOTIFICATIONS_SENDING_STUCK_AFTER_S": str(STUCK_AFTER_S),
            "NOTIFICATIONS_DISPATCH_LEASE_S": "10",
        }
    )
    with django_db_blocker.unblock():
        reseed()
    # The worker and beat restarted side by side: the worker with the settings above, beat reading
    # the dispatcher's short interval (it keeps it across the wipes after each test).
    for proc in (stack.worker, stack.beat):
        proc.signal()
    for proc in (stack.worker, stack.beat):
        proc.wait_stopped()
    offsets = {proc: proc.log_size() for proc in (stack.worker, stack.beat)}
    for proc in offsets:
        proc.start()
    stack.worker.wait_for_log("ready.", since=offsets[stack.worker])
    stack.beat.wait_for_log("beat: Starting", since=offsets[stack.beat])
    return stack


def restart_worker(stack: Stack) -> None:
    stack.worker.stop()
    offset = stack.worker.log_size()
    stack.worker.start()
    stack.worker.wait_for_log("ready.", since=offset)


def reseed() -> None:
    """Put back the rows the notifications data migrations create (the seeded templates and the
    dispatcher's PeriodicTask), which the wipe after every transactional test removes."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    seed_rows()
    # As an operator would in the admin: a short dispatcher interval, for second-long schedules.
    every, _ = IntervalSchedule.objects.get_or_create(
        every=DISPATCH_INTERVAL_US, period=IntervalSchedule.MICROSECONDS
    )
    task = PeriodicTask.objects.get(task="notifications.dispatch_due")
    task.interval = every
    task.expire_seconds = 2
    task.save()


@pytest.fixture
def nlive(notification_stack: Stack, live: Stack) -> Iterator[Stack]:
    """The running stack for one notifications flow test, its seed rows back, breakers closed."""
    reseed()
    client = redis.Redis.from_url(TEST_REDIS_URL)
    for key in client.scan_iter("notifications:breaker*"):
        client.delete(key)
    yield live


@pytest.fixture
def redis_protection() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    with override_settings(NOTIFICATIONS_REDIS_URL=TEST_REDIS_URL):
        protection._client.cache_clear()
        protection._scripts.cache_clear()
        yield client
    protection._client.cache_clear()
    protection._scripts.cache_clear()
