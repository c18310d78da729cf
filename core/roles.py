"""The platform's roles: the Django groups `operators` and `auditors` and what each may do.

Other apps import the group names from here. The grants are additive and keyed by app label, so a
model another app adds later is covered by the next `migrate` (audit re-syncs after every migrate).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q

OPERATORS = "operators"
AUDITORS = "auditors"

ALL_MODELS = "*"

# role -> (app label, model name or ALL_MODELS, permission actions)
ROLE_PERMISSIONS: dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    # Operators run the platform: payments and refunds, notifications (and requesting them),
    # ledger postings other than a client's transfer, the assignment of ledger accounts to
    # clients, dead letters, and the schedule of existing periodic tasks (creating one, or
    # changing what it runs, is for superusers: django_celery_beat's admin enforces it).
    # They do not read the audit log.
    OPERATORS: (
        ("payments", ALL_MODELS, ("view", "change", "refund")),
        ("notifications", ALL_MODELS, ("view", "change", "add")),
        ("ledger", ALL_MODELS, ("view", "post")),
        ("ledger", "clientaccount", ("add", "change", "delete")),
        ("bridge", ALL_MODELS, ("view", "change")),
        ("django_celery_beat", ALL_MODELS, ("view", "change")),
        # Orders (cancel, mark shipped and delivered) and the product catalog with its stock.
        ("orders", ALL_MODELS, ("view", "change")),
        ("orders", "product", ("add",)),
    ),
    # Auditors read everything the domains record and work compliance alerts; nobody may change
    # the audit log itself.
    AUDITORS: (
        ("audit", "auditevent", ("view",)),
        ("audit", "chaincheckpoint", ("view",)),
        ("audit", "compliancealert", ("view", "change")),
        ("payments", ALL_MODELS, ("view",)),
        ("ledger", ALL_MODELS, ("view",)),
        ("notifications", ALL_MODELS, ("view",)),
        ("orders", ALL_MODELS, ("view",)),
    ),
}


def _grant_filter(grants: tuple[tuple[str, str, tuple[str, ...]], ...]) -> Q:
    condition = Q(pk__in=[])
    for app_label, model, actions in grants:
        for action in actions:
            if model == ALL_MODELS:
                condition |= Q(content_type__app_label=app_label, codename__startswith=f"{action}_")
            else:
                condition |= Q(content_type__app_label=app_label, codename=f"{action}_{model}")
    return condition


def sync_role_groups(*, group_model: Any, permission_model: Any) -> None:
    """Create the groups and grant them their permissions (never revokes a manual grant).

    Takes the models so that a data migration can pass its historical ones.
    """
    for role, grants in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        group.permissions.add(*permission_model.objects.filter(_grant_filter(grants)))
