"""Production settings: DEBUG off by default, the refused development values, check --deploy,
probes over plain HTTP, Flower auth."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from bridge.embedded import free_port
from tests.conftest import Stack
from tests.ops.conftest import (
    METRICS_TOKEN,
    PRODUCTION_SECRET,
    WebProcess,
    json_lines,
    production_env,
    wait_for_http,
)
from tests.support.processes import ROOT, VENV_BIN, Proc, celery, child_env, manage

# The tests run manage.py, gunicorn or Flower in production mode as a process of their own, but
# for the values the settings module accepts or refuses, which it reads in-process (read_settings).
pytestmark = pytest.mark.processes


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


SETUP_DJANGO = [
    sys.executable,
    "-c",
    "import django; from django.conf import settings; django.setup(); print('DEBUG', settings.DEBUG)",
]


def read_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Run the settings module in this process with exactly `env` as the environment: what a
    process's django.setup() reads first, without the half second of starting one per case. That
    a process does start (DEBUG off) and does stop at a refusal, manage.py and gunicorn included,
    real processes show below."""
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "kafka_platform" / "settings.py"), run_name="settings_under_test")


def without_debug(**overrides: str | None) -> dict[str, str]:
    """A fully configured production environment with DJANGO_DEBUG unset, plus `overrides`
    (None removes the variable: its development default applies)."""
    env = production_env(child_env({}), DJANGO_SETTINGS_MODULE="kafka_platform.settings")
    del env["DJANGO_DEBUG"]
    for name, value in overrides.items():
        if value is not None:
            env[name] = value
        else:
            env.pop(name, None)
    return env


def test_a_fully_configured_production_environment_starts_with_debug_off() -> None:
    result = run(SETUP_DJANGO, without_debug())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("DEBUG False"), "DJANGO_DEBUG unset means DEBUG off"


def test_debug_is_on_only_when_asked_for() -> None:
    # The development values pass only because DEBUG is on: unset, they are refused (below).
    development = {name: None for name in ("DJANGO_SECRET_KEY", "WEBHOOK_SIGNING_SECRET", "EMAIL_HOST")}
    result = run(SETUP_DJANGO, without_debug(DJANGO_DEBUG="1", **development))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("DEBUG True")


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"DJANGO_SECRET_KEY": None}, "DJANGO_SECRET_KEY is the development key"),
        ({"WEBHOOK_SIGNING_SECRET": None}, "WEBHOOK_SIGNING_SECRET is unset or the development secret"),
        ({"WEBHOOK_SIGNING_SECRET": ""}, "WEBHOOK_SIGNING_SECRET is unset or the development secret"),
        (
            {"WEBHOOK_SIGNING_SECRET": "whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtMzJieXRlcyE="},
            "WEBHOOK_SIGNING_SECRET is unset or the development secret",
        ),
        ({"AUDIT_CHECKPOINT_KEY": None}, "AUDIT_CHECKPOINT_KEY"),
        ({"AUDIT_CHECKPOINT_KEY": ""}, "AUDIT_CHECKPOINT_KEY is unset"),
        ({"AUDIT_CHECKPOINT_KEY": PRODUCTION_SECRET}, "AUDIT_CHECKPOINT_KEY equals DJANGO_SECRET_KEY"),
        ({"EMAIL_HOST": None}, "EMAIL_BACKEND"),
        ({"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}, "EMAIL_BACKEND"),
        (
            {"NOTIFICATIONS_SMS_PROVIDER": "notifications.providers.console.ConsoleSmsProvider"},
            "NOTIFICATIONS_SMS_PROVIDER",
        ),
        ({"NOTIFICATIONS_SMS_PROVIDER": None}, "NOTIFICATIONS_SMS_PROVIDER"),
        ({"NOTIFICATIONS_PUSH_PROVIDER": None}, "NOTIFICATIONS_PUSH_PROVIDER"),
        (
            {"AUDIT_CHECKPOINT_KEY": "dev-only-audit-checkpoint-key"},
            "AUDIT_CHECKPOINT_KEY is the development key",
        ),
        ({"METRICS_TOKEN": None}, "METRICS_TOKEN is unset"),
        ({"METRICS_TOKEN": ""}, "METRICS_TOKEN is unset"),
        ({"METRICS_TOKEN": "metrics-dev-only"}, "METRICS_TOKEN is the compose development default"),
        ({"WEBHOOK_ALLOWED_HOSTS": "hooks.internal,169.254.169.254"}, "WEBHOOK_ALLOWED_HOSTS"),
        ({"WEBHOOK_ALLOWED_HOSTS": "10.0.0.0/8,169.254.0.0/16"}, "WEBHOOK_ALLOWED_HOSTS"),
        ({"WEBHOOK_ALLOWED_HOSTS": "0.0.0.0/0"}, "WEBHOOK_ALLOWED_HOSTS"),
        ({"WEBHOOK_ALLOWED_HOSTS": "fd00:ec2::254"}, "WEBHOOK_ALLOWED_HOSTS"),
        ({"WEBHOOK_ALLOWED_HOSTS": "::/0"}, "WEBHOOK_ALLOWED_HOSTS"),
        ({"WEBHOOK_ALLOWED_HOSTS": "64:ff9b::a9fe:a9fe"}, "WEBHOOK_ALLOWED_HOSTS"),
        ({"WEBHOOK_ALLOWED_HOSTS": "Metadata.Google.Internal."}, "WEBHOOK_ALLOWED_HOSTS"),
        ({"PLATFORM_EVENT_KEY": None}, "PLATFORM_EVENT_KEY is unset"),
        ({"PLATFORM_EVENT_KEY": "dev-only-platform-event-key"}, "PLATFORM_EVENT_KEY is the development key"),
        ({"PLATFORM_EVENT_KEY": PRODUCTION_SECRET}, "PLATFORM_EVENT_KEY equals DJANGO_SECRET_KEY"),
        ({"PLATFORM_ALLOW_INSECURE_KAFKA": None}, "KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
        (
            {"PLATFORM_ALLOW_INSECURE_KAFKA": None, "KAFKA_SECURITY_PROTOCOL": "plaintext"},
            "KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
        ),
        (
            {"KAFKA_TOPIC_REPLICATION_FACTOR": None, "KAFKA_TOPIC_MIN_INSYNC_REPLICAS": "4"},
            "KAFKA_TOPIC_MIN_INSYNC_REPLICAS is 4, above KAFKA_TOPIC_REPLICATION_FACTOR (3)",
        ),
        ({"KAFKA_TOPIC_MIN_INSYNC_REPLICAS": "0"}, "KAFKA_TOPIC_MIN_INSYNC_REPLICAS is 0: set it to 1"),
    ],
    ids=[
        "dev-secret-key",
        "default-webhook-secret",
        "empty-webhook-secret",
        "dev-webhook-secret",
        "no-checkpoint-key",
        "empty-checkpoint-key",
        "checkpoint-key-is-secret-key",
        "console-email-by-default",
        "console-email-backend",
        "console-sms",
        "console-sms-by-default",
        "console-push-by-default",
        "dev-checkpoint-key",
        "no-metrics-token",
        "empty-metrics-token",
        "compose-metrics-token",
        "metadata-address-allowed",
        "link-local-cidr-allowed",
        "everything-allowed",
        "aws-ipv6-metadata-allowed",
        "every-ipv6-allowed",
        "nat64-metadata-allowed",
        "gcp-metadata-host-allowed",
        "no-event-key",
        "dev-event-key",
        "event-key-is-secret-key",
        "plaintext-kafka",
        "plaintext-kafka-lowercase",
        "min-insync-above-replication",
        "no-min-insync",
    ],
)
def test_production_refuses_to_start_with_a_development_value(
    overrides: dict[str, str | None], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        read_settings(without_debug(**overrides), monkeypatch)
    assert named in str(refused.value)


def test_webhook_hosts_that_are_private_but_not_metadata_are_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read_settings(without_debug(WEBHOOK_ALLOWED_HOSTS="10.0.0.0/8,hooks.internal,fd12::/16"), monkeypatch)


def test_every_refusal_is_reported_in_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    everything_default = {
        name: None
        for name in (
            "DJANGO_SECRET_KEY",
            "WEBHOOK_SIGNING_SECRET",
            "AUDIT_CHECKPOINT_KEY",
            "EMAIL_HOST",
            "NOTIFICATIONS_SMS_PROVIDER",
            "NOTIFICATIONS_PUSH_PROVIDER",
        )
    }
    with pytest.raises(ImproperlyConfigured) as refused:
        read_settings(without_debug(**everything_default), monkeypatch)
    message = str(refused.value)[str(refused.value).index("Refusing to start") :]
    for name in (
        "DJANGO_SECRET_KEY",
        "WEBHOOK_SIGNING_SECRET",
        "AUDIT_CHECKPOINT_KEY",
        "EMAIL_BACKEND",
        "NOTIFICATIONS_SMS_PROVIDER",
        "NOTIFICATIONS_PUSH_PROVIDER",
    ):
        assert name in message, name


def test_an_event_key_equal_to_another_key_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    env = without_debug()
    with pytest.raises(ImproperlyConfigured, match="PLATFORM_EVENT_KEY equals AUDIT_CHECKPOINT_KEY"):
        read_settings({**env, "PLATFORM_EVENT_KEY": env["AUDIT_CHECKPOINT_KEY"]}, monkeypatch)


def test_kafka_over_tls_needs_no_insecure_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    read_settings(
        without_debug(PLATFORM_ALLOW_INSECURE_KAFKA=None, KAFKA_SECURITY_PROTOCOL="SASL_SSL"), monkeypatch
    )


# What production says of topics on a single broker (kafka_platform/production.py).
SINGLE_REPLICA_REFUSAL = (
    "- KAFKA_TOPIC_REPLICATION_FACTOR is 1 (one broker's loss loses the topics' records): set it to 3, "
    "or set PLATFORM_ALLOW_UNREPLICATED_KAFKA=1 to accept that (a single-broker staging, say)."
)


def replication(values: dict[str, object]) -> tuple[object, object]:
    return values["KAFKA_TOPIC_REPLICATION_FACTOR"], values["KAFKA_TOPIC_MIN_INSYNC_REPLICAS"]


def test_production_creates_topics_with_three_replicas_two_in_sync_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unset = {"KAFKA_TOPIC_REPLICATION_FACTOR": None, "PLATFORM_ALLOW_UNREPLICATED_KAFKA": None}
    assert replication(read_settings(without_debug(**unset), monkeypatch)) == (3, 2)
    # Two replicas need no allowance; both must acknowledge (the in-sync default stays 2).
    two = read_settings(without_debug(**{**unset, "KAFKA_TOPIC_REPLICATION_FACTOR": "2"}), monkeypatch)
    assert replication(two) == (2, 2)


def test_development_keeps_one_replica_for_the_embedded_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    unset = {"KAFKA_TOPIC_REPLICATION_FACTOR": None, "PLATFORM_ALLOW_UNREPLICATED_KAFKA": None}
    assert replication(read_settings(without_debug(DJANGO_DEBUG="1", **unset), monkeypatch)) == (1, 1)


def test_production_refuses_a_single_replica_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    refused_env = without_debug(KAFKA_TOPIC_REPLICATION_FACTOR="1", PLATFORM_ALLOW_UNREPLICATED_KAFKA=None)
    with pytest.raises(ImproperlyConfigured) as refused:
        read_settings(refused_env, monkeypatch)
    assert SINGLE_REPLICA_REFUSAL in str(refused.value).splitlines()
    # Allowed (a single-broker staging, as the tests' own): the in-sync default follows it down.
    allowed = without_debug(KAFKA_TOPIC_REPLICATION_FACTOR="1", PLATFORM_ALLOW_UNREPLICATED_KAFKA="1")
    assert replication(read_settings(allowed, monkeypatch)) == (1, 1)


def test_a_production_process_with_one_replica_stops_naming_the_setting_and_the_allowance() -> None:
    result = run(manage("check"), without_debug(PLATFORM_ALLOW_UNREPLICATED_KAFKA=None))
    assert result.returncode != 0
    assert SINGLE_REPLICA_REFUSAL in result.stderr.splitlines(), result.stderr
    assert "Traceback" not in result.stderr


def test_console_providers_are_accepted_in_production_only_when_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consoles = {"EMAIL_HOST": None, "NOTIFICATIONS_SMS_PROVIDER": None, "NOTIFICATIONS_PUSH_PROVIDER": None}
    read_settings(without_debug(PLATFORM_ALLOW_CONSOLE_PROVIDERS="1", **consoles), monkeypatch)
    # The allowance covers the providers only, never a development secret.
    with pytest.raises(ImproperlyConfigured) as refused:
        read_settings(
            without_debug(PLATFORM_ALLOW_CONSOLE_PROVIDERS="1", WEBHOOK_SIGNING_SECRET="", **consoles),
            monkeypatch,
        )
    assert "WEBHOOK_SIGNING_SECRET" in str(refused.value)
    assert "NOTIFICATIONS_SMS_PROVIDER" not in str(refused.value)


def test_check_deploy_is_clean_with_production_settings() -> None:
    result = run(manage("check", "--deploy", "--fail-level", "WARNING"), production_env(child_env({})))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_with_the_development_secret_key() -> None:
    env = production_env(child_env({}))
    del env["DJANGO_SECRET_KEY"]
    result = run(manage("check"), env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is the development key while DJANGO_DEBUG=0" in result.stderr

    # The web process as deployed stops at boot too (gunicorn loads the app before serving).
    web = run([str(VENV_BIN / "gunicorn"), "kafka_platform.wsgi:application"], env)
    assert web.returncode != 0
    assert "DJANGO_SECRET_KEY is the development key" in web.stdout + web.stderr


def test_production_web_serves_metrics_and_health_over_plain_http_and_redirects_the_rest(
    production_web: WebProcess,
) -> None:
    bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    for path in ("/metrics", "/health", "/ready", "/live"):
        response = requests.get(production_web.url + path, headers=bearer, timeout=10, allow_redirects=False)
        assert response.status_code in (200, 503), f"{path}: {response.status_code} {response.headers}"
    assert "outbox_pending" in requests.get(production_web.url + "/metrics", headers=bearer, timeout=10).text

    admin = requests.get(production_web.url + "/admin/", timeout=10, allow_redirects=False)
    assert admin.status_code == 301 and admin.headers["Location"].startswith("https://")
    behind_tls_proxy = requests.get(
        production_web.url + "/admin/", headers={"X-Forwarded-Proto": "https"}, allow_redirects=False
    )
    assert behind_tls_proxy.status_code == 302  # to the login page, over the proxy's HTTPS

    access = [
        line for line in json_lines(production_web.proc.log_path) if line["logger"] == "gunicorn.access"
    ]
    assert any("/metrics" in line["event"] for line in access), "gunicorn's access log is JSON lines"


def test_production_web_serves_metrics_and_health_details_only_to_the_metrics_token(
    production_web: WebProcess,
) -> None:
    def get(path: str, **headers: str) -> requests.Response:
        return requests.get(production_web.url + path, headers=headers, timeout=10, allow_redirects=False)

    for refused in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Token {METRICS_TOKEN}"}):
        answer = get("/metrics", **refused)
        assert answer.status_code == 401 and "outbox_pending" not in answer.text, refused
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert "outbox_pending" in get("/metrics", Authorization=f"Bearer {METRICS_TOKEN}").text

    # /health answers everyone its overall status (an uptime check), the details only with the token.
    bare = get("/health")
    assert bare.status_code in (200, 503) and set(bare.json()) == {"status"}
    assert set(get("/health", Authorization="Bearer wrong-token").json()) == {"status"}
    detailed = get("/health", Authorization=f"Bearer {METRICS_TOKEN}")
    assert {"database", "redis", "kafka", "outbox"} <= set(detailed.json()["checks"])
    # The orchestrator's probes stay open.
    assert get("/live").status_code == 200
    assert get("/ready").status_code in (200, 503) and set(get("/ready").json()) == {"status"}
    assert "database" in get("/ready", Authorization=f"Bearer {METRICS_TOKEN}").json()["checks"]


@pytest.mark.slow  # starts and stops processes of its own: `make test` runs it
def test_flower_requires_basic_auth_in_production(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    argv = celery("flower", f"--port={port}", "--address=127.0.0.1")
    refused = run(argv, production_env(stack.env))
    assert refused.returncode != 0
    assert "FLOWER_BASIC_AUTH is required when DJANGO_DEBUG=0" in refused.stdout + refused.stderr

    flower = Proc("flower", argv, production_env(stack.env, FLOWER_BASIC_AUTH="ops:s3cret-flower"), tmp_path)
    flower.start()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", proc=flower)
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 401
        wrong = requests.get(f"http://127.0.0.1:{port}/", auth=("ops", "guess"), timeout=10)
        assert wrong.status_code == 401
        ok = requests.get(f"http://127.0.0.1:{port}/", auth=("ops", "s3cret-flower"), timeout=10)
        assert ok.status_code == 200
        # What the compose healthcheck probes stays open.
        assert requests.get(f"http://127.0.0.1:{port}/healthcheck", timeout=10).status_code == 200
        # Flower watches only: its API runs no task (a topup of any amount, say), even for its users.
        for path in ("task/async-apply", "task/send-task", "task/apply"):
            ran = requests.post(
                f"http://127.0.0.1:{port}/api/{path}/ledger.post_transaction_requested",
                json={"kwargs": {"payload": {"data": {"kind": "topup", "amount": "5000"}}}},
                auth=("ops", "s3cret-flower"),
                timeout=10,
            )
            assert ran.status_code == 403 and "Read only mode is enabled" in ran.text, (path, ran.text[:300])
    finally:
        flower.stop()
    assert any(line.get("logger") for line in json_lines(flower.log_path)), "Flower logs JSON lines"


def test_flower_refuses_the_compose_default_credentials_in_production(stack: Stack) -> None:
    argv = celery("flower", f"--port={free_port()}")
    result = run(argv, production_env(stack.env, FLOWER_BASIC_AUTH="ops:s3cret,flower:flower-dev-only"))
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH is compose's development default" in result.stdout + result.stderr


@pytest.mark.parametrize("pair", ["ops", ":nopassword", "ops:"])
def test_flower_refuses_a_malformed_basic_auth_setting(stack: Stack, pair: str) -> None:
    result = run(celery("flower", f"--port={free_port()}"), production_env(stack.env, FLOWER_BASIC_AUTH=pair))
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH entries are user:password" in result.stdout + result.stderr


def test_a_rotated_secret_key_keeps_accepting_what_the_previous_key_signed() -> None:
    old, new = "old-" + "k" * 50, "new-" + "n" * 50
    sign = "from django.core import signing; print(signing.dumps('session-42'))"
    signed = run(manage("shell", "-c", sign), production_env(child_env({}), DJANGO_SECRET_KEY=old))
    assert signed.returncode == 0, signed.stderr
    token = signed.stdout.strip().splitlines()[-1]
    verify = f"from django.core import signing; print(signing.loads({token!r}))"

    rotated = run(
        manage("shell", "-c", verify),
        production_env(child_env({}), DJANGO_SECRET_KEY=new, DJANGO_SECRET_KEY_FALLBACKS=old),
    )
    assert rotated.returncode == 0 and rotated.stdout.strip().endswith("session-42"), rotated.stderr
    dropped = run(manage("shell", "-c", verify), production_env(child_env({}), DJANGO_SECRET_KEY=new))
    assert dropped.returncode != 0 and "BadSignature" in dropped.stderr


def test_a_development_shell_without_debug_is_told_the_fix_first_without_a_traceback() -> None:
    """`manage.py` run by hand in a fresh shell (DJANGO_DEBUG unset, development defaults)."""
    env = child_env({})
    env.pop("DJANGO_DEBUG", None)
    for name in ("DJANGO_SECRET_KEY", "WEBHOOK_SIGNING_SECRET", "AUDIT_CHECKPOINT_KEY"):
        env.pop(name, None)
    result = subprocess.run(manage("check"), env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    first_line = result.stderr.splitlines()[0]
    assert first_line.startswith(
        "Refusing to start with DJANGO_DEBUG off. For local development, set DJANGO_DEBUG=1"
    )
    assert "Traceback" not in result.stderr
    assert "DJANGO_SECRET_KEY" in result.stderr
