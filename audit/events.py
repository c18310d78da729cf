"""The audit domain's event schemas: the records every domain publishes to `audit.*`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditRecord(BaseModel):
    """The data of an audit.<domain>-events CloudEvent; fields beyond these are kept."""

    model_config = ConfigDict(extra="allow")

    action: str = Field(min_length=1, max_length=100)
    subjectType: str | None = None  # noqa: N815 - the wire name
    subjectId: str | None = None  # noqa: N815
    actor: str = "system"
    details: dict[str, Any] = Field(default_factory=dict)
