"""Periodic tasks in the admin: operators reschedule, only superusers decide what runs (and
django-axes' login attempts: cleaning them up needs the delete permission, see the end).

django_celery_beat's own admin lets anyone holding its model permissions create a periodic task
naming any registered Celery task with any arguments, and run it at once: a ledger topup of any
amount, say. Operators may enable, disable and reschedule the existing tasks (docs/api.md);
creating, deleting, running on demand and changing the task, its arguments or its routing are
for superusers.

Autodiscovery imports this module after django_celery_beat's admin (INSTALLED_APPS order), so the
registration below replaces that one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django_celery_beat.admin import PeriodicTaskAdmin, PeriodicTaskForm
from django_celery_beat.models import PeriodicTask

# What an operator may change on an existing periodic task: whether it runs, and when.
SCHEDULE_FIELDS = frozenset({"enabled", "interval", "crontab", "solar", "clocked", "start_time", "one_off"})
# Actions that only switch tasks on or off.
SCHEDULE_ACTIONS = ("enable_tasks", "disable_tasks", "toggle_tasks")


class ScheduleOnlyPeriodicTaskForm(PeriodicTaskForm):
    """The form without `regtask`, the picker whose value `PeriodicTaskForm.clean` copies into
    `task`; what is left of what a task runs is shown read-only, never submitted."""

    regtask = None


def _is_superuser(request: HttpRequest) -> bool:
    return bool(getattr(request.user, "is_superuser", False))


class PlatformPeriodicTaskAdmin(PeriodicTaskAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return _is_superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return _is_superuser(request)

    def get_fieldsets(self, request: HttpRequest, obj: Model | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if _is_superuser(request):
            return fieldsets
        return [
            (title, {**options, "fields": tuple(f for f in options["fields"] if f != "regtask")})
            for title, options in fieldsets
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Sequence[str]:
        readonly = list(super().get_readonly_fields(request, obj))
        if _is_superuser(request):
            return readonly
        # Everything but the schedule: fields Django shows read-only it also leaves out of the
        # form, so a crafted POST of them is ignored.
        for _, options in self.get_fieldsets(request, obj):
            readonly += [f for f in options["fields"] if f not in SCHEDULE_FIELDS and f not in readonly]
        return readonly

    def get_form(
        self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if not _is_superuser(request):
            kwargs["form"] = ScheduleOnlyPeriodicTaskForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not _is_superuser(request):
            # Running a task on demand runs whatever it names, with its arguments, right now.
            actions.pop("run_tasks", None)
        if not self.has_change_permission(request):
            for name in SCHEDULE_ACTIONS:
                actions.pop(name, None)
        return actions


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PlatformPeriodicTaskAdmin)


class PlatformAccessAttemptAdmin(AccessAttemptAdmin):
    """django-axes' login attempts, whose cleanup action asked for no permission (every staff user
    with the admin open was offered it): deleting attempts needs the delete permission."""

    @admin.action(description="Clean up expired attempts", permissions=["delete"])
    def cleanup_expired_attempts(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        super().cleanup_expired_attempts(request, queryset)


admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, PlatformAccessAttemptAdmin)
