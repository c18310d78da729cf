"""`python manage.py audit_verify`: exit 0 when the audit chain is intact, 1 with the first bad
record when it is not (docs/audit.md, Verification); with `--kafka`, also 1 when the
database's checkpoints differ from those published on audit.checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit import checkpoint_topic, selectors
from audit.models import AuditEvent
from audit.selectors import ChainReport
from bridge import topics


class Command(BaseCommand):
    help = "Verify the audit log's hash chain and signed checkpoints; exit 1 if it was tampered with."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--archive-dir",
            type=Path,
            help="Also verify the retention archive in this directory and that the database's "
            "chain continues it.",
        )
        parser.add_argument(
            "--kafka",
            action="store_true",
            help="Also compare the database's checkpoints with those published on audit.checkpoints "
            "(read from the beginning): a checkpoint missing or different on either side fails.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        reports = [("database", selectors.verify_chain())]
        if options["archive_dir"] is not None:
            reports.append(
                (f"archive {options['archive_dir']}", selectors.verify_archive(options["archive_dir"]))
            )
        intact = True
        for name, report in reports:
            if report.intact:
                self.stdout.write(self.style.SUCCESS(f"{name}: intact. {self._summary(report)}"))
            else:
                intact = False
                self.stdout.write(self.style.ERROR(f"{name}: TAMPERED. {self._first_bad(report)}"))
        if options["kafka"] and not self._compare_with_topic():
            intact = False
        if not intact:
            raise SystemExit(1)

    def _compare_with_topic(self) -> bool:
        result = checkpoint_topic.verify_published()
        name = f"kafka {topics.AUDIT_CHECKPOINTS.name}"
        if result.agrees:
            pending = f"; #{', #'.join(map(str, result.pending))} not yet published" if result.pending else ""
            self.stdout.write(
                self.style.SUCCESS(
                    f"{name}: agrees. {result.database} checkpoint(s) in the database, "
                    f"{result.published} on the topic{pending}."
                )
            )
            return True
        self.stdout.write(
            self.style.ERROR(f"{name}: DIFFERS from the database's checkpoints ({len(result.differences)}):")
        )
        for difference in result.differences:
            self.stdout.write(f"  {difference}")
        return False

    @staticmethod
    def _summary(report: ChainReport) -> str:
        if report.last_sequence is None:
            return f"No records after #{report.anchor_sequence}; {report.checkpoints} checkpoint(s)."
        return (
            f"{report.records} record(s) #{report.first_sequence}..#{report.last_sequence}, "
            f"head hash {report.head_hash}, {report.checkpoints} signed checkpoint(s)"
            + (
                f", chain continues from the retention anchor at #{report.anchor_sequence}"
                if report.anchor_sequence
                else ""
            )
            + "."
        )

    @staticmethod
    def _first_bad(report: ChainReport) -> str:
        broken = report.broken
        assert broken is not None
        line = f"First bad record: #{broken.sequence} ({broken.reason}): {broken.message}"
        row = AuditEvent.objects.filter(sequence=broken.sequence).first() if broken.sequence else None
        if row is not None:
            line += (
                f"\n  event {row.event_id} type {row.event_type} action {row.action} "
                f"subject {row.subject_type}:{row.subject_id} recorded {row.recorded_at.isoformat()}"
            )
        return line
