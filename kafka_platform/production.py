"""The refusals of a production start: settings that are safe only while developing.

settings.py calls `refuse_unsafe_production_settings` last, with DEBUG off, so every final value
is checked. All refusals are reported in one message: an operator fixing a deployment sees the
whole list at once instead of one restart per setting.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

CONSOLE_EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
CONSOLE_PROVIDERS_MODULE = "notifications.providers.console"
ALLOW_CONSOLE_PROVIDERS = "PLATFORM_ALLOW_CONSOLE_PROVIDERS"


def _is_console_provider(dotted_path: str) -> bool:
    return dotted_path.rpartition(".")[0] == CONSOLE_PROVIDERS_MODULE


def production_refusals(
    values: Mapping[str, Any], *, dev_secret_key: str, dev_webhook_secret: str, allow_console: bool
) -> list[str]:
    """One sentence per unsafe setting in `values` (the settings module's globals), naming it."""
    refusals = []
    secret_key = values["SECRET_KEY"]
    if secret_key == dev_secret_key:
        refusals.append("DJANGO_SECRET_KEY is the development key while DJANGO_DEBUG=0: set a real secret.")
    webhook_secret = values["WEBHOOK_SIGNING_SECRET"]
    if not webhook_secret or webhook_secret == dev_webhook_secret:
        # Receivers would accept deliveries signed by anyone who has read this repository.
        refusals.append(
            "WEBHOOK_SIGNING_SECRET is unset or the development secret: set a whsec_ secret of your own."
        )
    checkpoint_key = values["AUDIT_CHECKPOINT_KEY"]
    if not checkpoint_key:
        refusals.append("AUDIT_CHECKPOINT_KEY is unset: set the key that signs audit checkpoints.")
    elif checkpoint_key == secret_key:
        # Whoever holds the web process's secret could then re-sign a rewritten audit chain.
        refusals.append("AUDIT_CHECKPOINT_KEY equals DJANGO_SECRET_KEY: give checkpoints a key of their own.")
    refusals += _operations_refusals(values)
    refusals += kafka_refusals(values)
    if not allow_console:
        # Console providers print recipients and texts to the log and report every message as sent.
        consoles = []
        if values["EMAIL_BACKEND"] == CONSOLE_EMAIL_BACKEND:
            consoles.append("EMAIL_BACKEND (set EMAIL_HOST or an email service backend)")
        for name in ("NOTIFICATIONS_SMS_PROVIDER", "NOTIFICATIONS_PUSH_PROVIDER"):
            if _is_console_provider(values[name]):
                consoles.append(name)
        if consoles:
            refusals.append(
                f"{', '.join(consoles)} print messages to the console instead of sending them: "
                f"configure real providers, or set {ALLOW_CONSOLE_PROVIDERS}=1 to accept that."
            )
    return refusals


# --- Operations: the development checkpoint key, metadata webhook targets, the metrics token ------
# Cloud metadata services answer on these: an allowlisted webhook target among them would hand
# the instance's credentials to whoever registers the endpoint. Each network is one the webhook
# check would reach 169.254.169.254 (or another provider's metadata address) through: link-local,
# AWS's IPv6 metadata address, Alibaba's, and IPv6 forms embedding IPv4 link-local (IPv4-mapped,
# IPv4-compatible, NAT64, 6to4; Teredo and local-use NAT64 as a whole, as they hide the address).
METADATA_NETWORKS = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "169.254.0.0/16",
        "100.100.100.200/32",
        "fe80::/10",
        "fd00:ec2::254/128",
        "::ffff:169.254.0.0/112",
        "::169.254.0.0/112",
        "64:ff9b::169.254.0.0/112",
        "64:ff9b:1::/48",
        "2002:a9fe::/32",
        "2001::/32",
    )
)
METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)


# docker/compose.yml's development default (Prometheus' metrics-token file holds the same).
COMPOSE_METRICS_TOKEN = "metrics-dev-only"  # noqa: S105 - refused, never used


def metadata_entries(entries: list[str]) -> list[str]:
    """The WEBHOOK_ALLOWED_HOSTS entries that name or contain a cloud metadata address."""
    found = []
    for entry in (str(e).strip() for e in entries):
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if entry.lower().rstrip(".") in METADATA_HOSTS:
                found.append(entry)
            continue
        if any(network.version == bad.version and network.overlaps(bad) for bad in METADATA_NETWORKS):
            found.append(entry)
    return found


def _operations_refusals(values: Mapping[str, Any]) -> list[str]:
    refusals = []
    if (
        values["AUDIT_CHECKPOINT_KEY"]
        and values["AUDIT_CHECKPOINT_KEY"] == values["DEV_AUDIT_CHECKPOINT_KEY"]
    ):
        # It is in the repository: anyone could re-sign a rewritten audit chain.
        refusals.append(
            "AUDIT_CHECKPOINT_KEY is the development key from the repository: set a key of your own."
        )
    metadata = metadata_entries(list(values["WEBHOOK_ALLOWED_HOSTS"]))
    if metadata:
        refusals.append(
            f"WEBHOOK_ALLOWED_HOSTS lets webhooks reach a cloud metadata address ({', '.join(metadata)}): "
            "remove link-local (169.254.0.0/16, fe80::/10) and metadata entries."
        )
    if not values.get("METRICS_TOKEN"):
        refusals.append(
            "METRICS_TOKEN is unset: /metrics and the detailed /health would answer anyone; "
            "set the bearer token Prometheus sends."
        )
    elif values["METRICS_TOKEN"] == COMPOSE_METRICS_TOKEN:
        refusals.append("METRICS_TOKEN is the compose development default: set a token of your own.")
    return refusals


def kafka_refusals(values: Mapping[str, Any]) -> list[str]:
    """The Kafka settings production refuses: a platform event key anyone could know,
    unauthenticated, unencrypted broker connections nobody accepted, or topics without replicas."""
    refusals = []
    event_key = values["PLATFORM_EVENT_KEY"]
    # The environment variable each key is set by, and its value.
    others = {
        "DJANGO_SECRET_KEY": values["SECRET_KEY"],
        "AUDIT_CHECKPOINT_KEY": values["AUDIT_CHECKPOINT_KEY"],
        "WEBHOOK_SIGNING_SECRET": values["WEBHOOK_SIGNING_SECRET"],
    }
    same = [name for name, other in others.items() if other and other == event_key]
    if not event_key:
        refusals.append("PLATFORM_EVENT_KEY is unset: set the key that signs the platform's Kafka records.")
    elif event_key == values["DEV_PLATFORM_EVENT_KEY"]:
        # Anyone who has read this repository could sign records as the platform.
        refusals.append("PLATFORM_EVENT_KEY is the development key: set a key of your own.")
    elif same:
        refusals.append(
            f"PLATFORM_EVENT_KEY equals {', '.join(same)}: give Kafka signatures a key of their own."
        )
    protocol = (values["KAFKA_SECURITY_PROTOCOL"] or "PLAINTEXT").upper()
    if protocol == "PLAINTEXT" and not values["PLATFORM_ALLOW_INSECURE_KAFKA"]:
        refusals.append(
            "KAFKA_SECURITY_PROTOCOL is PLAINTEXT (no authentication, no encryption): use SASL_SSL or SSL, "
            "or set PLATFORM_ALLOW_INSECURE_KAFKA=1 to accept that (a single-broker staging, say)."
        )
    return refusals + topic_durability_refusals(values)


def topic_durability_refusals(values: Mapping[str, Any]) -> list[str]:
    """Topics one broker's loss would empty, or that no acks=all write could ever reach."""
    refusals = []
    replicas = values["KAFKA_TOPIC_REPLICATION_FACTOR"]
    if replicas < 2 and not values["PLATFORM_ALLOW_UNREPLICATED_KAFKA"]:
        refusals.append(
            f"KAFKA_TOPIC_REPLICATION_FACTOR is {replicas} (one broker's loss loses the topics' records): "
            "set it to 3, or set PLATFORM_ALLOW_UNREPLICATED_KAFKA=1 to accept that (a single-broker "
            "staging, say)."
        )
    refusals += min_insync_refusals(values)
    return refusals


def min_insync_refusals(values: Mapping[str, Any]) -> list[str]:
    """An in-sync minimum the topics cannot meet: refused, not lowered behind the operator's back
    (`kafka_topics` stops at it too, with DEBUG on)."""
    replicas, min_insync = values["KAFKA_TOPIC_REPLICATION_FACTOR"], values["KAFKA_TOPIC_MIN_INSYNC_REPLICAS"]
    if min_insync < 1:
        return [f"KAFKA_TOPIC_MIN_INSYNC_REPLICAS is {min_insync}: set it to 1 or more."]
    if min_insync > replicas:
        return [
            f"KAFKA_TOPIC_MIN_INSYNC_REPLICAS is {min_insync}, above KAFKA_TOPIC_REPLICATION_FACTOR "
            f"({replicas}): no acks=all write could succeed; set it to {replicas} at most."
        ]
    return []


# The first line of a refusal: a development shell that forgot DJANGO_DEBUG learns the fix at once.
REFUSAL_HEADLINE = (
    "Refusing to start with DJANGO_DEBUG off. For local development, set DJANGO_DEBUG=1 (the make "
    "targets do); for production, fix:"
)


class SettingsRefused(ImproperlyConfigured):
    """The production settings are unsafe; the message lists every reason (manage.py prints it
    without a traceback)."""


def refuse_unsafe_production_settings(
    values: Mapping[str, Any], *, dev_secret_key: str, dev_webhook_secret: str, allow_console: bool
) -> None:
    """Raise ImproperlyConfigured listing every refusal; returns when there is none."""
    refusals = production_refusals(
        values,
        dev_secret_key=dev_secret_key,
        dev_webhook_secret=dev_webhook_secret,
        allow_console=allow_console,
    )
    if refusals:
        raise SettingsRefused(REFUSAL_HEADLINE + "\n" + "\n".join(f"- {line}" for line in refusals))
