"""The API document's groups: one tag per domain, in the order a client meets them.

drf-spectacular tags an operation by the first segment of its path after the common prefix, which
for this API is `v1`: every operation landed in one group, sorted by path, payments far down. This
hook tags each operation by the domain that owns its first segment after `/api/v1/`.
"""

from __future__ import annotations

from typing import Any

API_PREFIX = "/api/v1/"
# (tag, description), in the order of the docs' groups.
DOMAIN_TAGS = [
    ("payments", "Request, read and refund payments."),
    ("orders", "Place and follow orders; the product catalog and its stock."),
    ("ledger", "Accounts, balances, history and transactions of the double-entry ledger."),
    ("notifications", "Notifications sent for the client, and its webhook endpoints."),
    ("audit", "The tamper-evident audit log, its verification, and compliance alerts."),
    ("platform", "The API document itself."),
]
DOMAIN_OF_SEGMENT = {
    "payments": "payments",
    "orders": "orders",
    "inventory": "orders",
    "ledger": "ledger",
    "notifications": "notifications",
    "webhook-endpoints": "notifications",
    "audit": "audit",
    "compliance": "audit",
}


def domain_of(path: str) -> str:
    """The tag of an API path: its domain, or `platform` for what belongs to none (the schema)."""
    if not path.startswith(API_PREFIX):
        return "platform"
    segment = path[len(API_PREFIX) :].split("/", 1)[0]
    return DOMAIN_OF_SEGMENT.get(segment, "platform")


def tag_by_domain(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: tag every operation with its domain."""
    for path, operations in result.get("paths", {}).items():
        tag = domain_of(path)
        for operation in operations.values():
            if isinstance(operation, dict):
                operation["tags"] = [tag]
    result["tags"] = [{"name": name, "description": text} for name, text in DOMAIN_TAGS]
    return result
