"""Create (or update) an API user with a token: a client, a service account, an operator or an auditor."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token

from core.roles import AUDITORS, OPERATORS
from core.signals import client_accounts_requested

# Requesting notifications through the API is for operators and service accounts (docs/api.md).
SERVICE_PERMISSIONS = ("notifications.add_notification",)


class Command(BaseCommand):
    help = (
        "Create an API user and print its token. A plain client gets the ledger account "
        "`user:<name>` assigned (more with --account); --role makes an operator or auditor; "
        "--service lets a system account request notifications."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--account",
            action="append",
            default=None,
            help="a ledger account to assign to the client (repeatable); default user:<name>",
        )
        parser.add_argument(
            "--role", choices=[OPERATORS, AUDITORS], help="make the user an operator or auditor"
        )
        parser.add_argument("--service", action="store_true", help="may request notifications")
        parser.add_argument("--quiet", action="store_true", help="print only the token")

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["name"]
        user, created = get_user_model().objects.get_or_create(username=name)
        if created:
            user.set_unusable_password()  # an API client authenticates with its token only
            user.save()
        if options["role"]:
            user.groups.add(Group.objects.get(name=options["role"]))
        if options["service"]:
            for dotted in SERVICE_PERMISSIONS:
                app_label, codename = dotted.split(".")
                try:
                    user.user_permissions.add(
                        Permission.objects.get(content_type__app_label=app_label, codename=codename)
                    )
                except Permission.DoesNotExist:
                    raise CommandError(f"permission {dotted} does not exist: run migrate") from None
        accounts = options["account"]
        if accounts is None and not options["role"] and not options["service"]:
            accounts = [f"user:{name}"]
        if accounts:
            answers = client_accounts_requested.send(
                sender=self.__class__, client=user, account_ids=accounts, actor="system:create_api_client"
            )
            if not any(assigned for _receiver, assigned in answers):
                raise CommandError("no installed app keeps ledger accounts: add the ledger to INSTALLED_APPS")
        token, _ = Token.objects.get_or_create(user=user)
        if options["quiet"]:
            self.stdout.write(token.key)
            return
        what = options["role"] or ("service account" if options["service"] else "client")
        self.stdout.write(f"{'created' if created else 'updated'} {what} {name!r}")
        for account_id in accounts or []:
            self.stdout.write(f"  ledger account assigned: {account_id}")
        self.stdout.write(f"  token: {token.key}")
        self.stdout.write(
            f'  use it as: curl -H "Authorization: Token {token.key}" http://127.0.0.1:8000/api/v1/payments/'
        )
