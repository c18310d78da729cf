"""Signal receivers of the audit app: failed logins become audit records; roles stay granted."""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.management import create_permissions
from django.db import DEFAULT_DB_ALIAS, transaction

from audit import services
from audit.api.exceptions import RECORDED_FLAG
from audit.events import audit_record
from bridge import outbox, topics
from bridge.deadletters import REPLAYED
from bridge.services import SKIP_REQUESTED
from core import roles


def record_login_failure(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    """Django's `user_login_failed` (the admin's login form, and any authenticate() call)."""
    username = credentials.get(get_user_model().USERNAME_FIELD) or credentials.get("username")
    services.auth_failure_record(
        channel="login",
        username=str(username) if username else None,
        remote_addr=request.META.get("REMOTE_ADDR") if request is not None else None,
        path=request.path if request is not None else "",
        reason="invalid_credentials",
    )
    if request is not None:
        setattr(request, RECORDED_FLAG, True)


def sync_roles(sender: Any, using: str = DEFAULT_DB_ALIAS, apps: Any = global_apps, **kwargs: Any) -> None:
    """After every migrate (and test flush): the groups exist with their permissions, including
    permissions of models added since the data migration ran."""
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using, apps=apps)
    roles.sync_role_groups(
        group_model=apps.get_model("auth", "Group"), permission_model=apps.get_model("auth", "Permission")
    )


def _record_operator_action(*, action: str, actor: str, subject: str, details: dict[str, Any]) -> None:
    """An operator's action on a Kafka record (`<topic>:<partition>:<offset>`), in the log."""
    outbox.record_event(
        topic=topics.AUDIT_COMPLIANCE_EVENTS,
        subject=subject,
        actor=actor,
        data=audit_record(
            action=action, subject_type="kafka_record", subject_id=subject, actor=actor, details=details
        ),
    )


def record_replay(
    sender: Any,
    *,
    actor: str,
    subject: str,
    topic: str,
    partition: int | None,
    offset: int | None,
    reason: str,
    via: str,
    **kwargs: Any,
) -> None:
    """The bridge's `replayed`: the operator who put a dead letter back on its topic, in the log."""
    details = {"topic": topic, "partition": partition, "offset": offset, "reason": reason, "via": via}
    with transaction.atomic():  # record_event belongs in a transaction of its caller
        _record_operator_action(action=REPLAYED, actor=actor, subject=subject, details=details)


def record_skip_request(
    sender: Any, *, actor: str, subject: str, details: dict[str, Any], **kwargs: Any
) -> None:
    """The bridge's `skip_requested`: the operator who asked to skip a stuck record, in the log
    (in the request's own transaction)."""
    _record_operator_action(action=SKIP_REQUESTED, actor=actor, subject=subject, details=details)
