"""`manage.py kafka_acls [--apply]`: print the broker ACLs of the three principal sets, or apply them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from kafka.errors import KafkaError

from bridge.acls import platform_acls
from bridge.clients import new_admin


def _principals(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


class Command(BaseCommand):
    help = (
        "Print the Kafka ACLs for clients (open input topics), trusted integrations (gated input "
        "topics) and the platform (everything, and its consumer group); --apply creates them "
        "through the admin API (as a principal allowed to ALTER the cluster)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--clients", default="User:clients", help="Comma-separated principals.")
        parser.add_argument("--integrations", default="User:integrations", help="Comma-separated principals.")
        parser.add_argument("--platform", default="User:platform", help="Comma-separated principals.")
        parser.add_argument(
            "--group", default=None, help="The bridge's consumer group (default: KAFKA_CONSUMER_GROUP)."
        )
        parser.add_argument("--apply", action="store_true", help="Create the ACLs on the broker.")

    def handle(self, *args: Any, **options: Any) -> None:
        rules = platform_acls(
            clients=_principals(options["clients"]),
            integrations=_principals(options["integrations"]),
            platform=_principals(options["platform"]),
            group=options["group"] or settings.KAFKA_CONSUMER_GROUP,
        )
        for rule in rules:
            self.stdout.write(str(rule))
        if not options["apply"]:
            return
        admin = new_admin()
        try:
            result = admin.create_acls([rule.to_kafka() for rule in rules])
        except KafkaError as exc:
            raise CommandError(f"the broker refused the ACLs: {type(exc).__name__}: {exc}") from exc
        finally:
            admin.close()
        failed = result.get("failed") or []
        for acl, error in failed:
            self.stderr.write(f"failed: {acl}: {error}")
        if failed:
            raise CommandError(f"{len(failed)} of {len(rules)} ACLs were not created")
        self.stdout.write(f"applied {len(rules)} ACLs")
