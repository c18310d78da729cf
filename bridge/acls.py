"""The broker ACLs that back who may produce what: clients, trusted integrations and the platform."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)

from bridge import topics

# Kafka's wildcard resource name (with a LITERAL pattern it matches every resource of the type),
# and the one name a CLUSTER resource has.
ANY_NAME = "*"
CLUSTER_NAME = "kafka-cluster"


@dataclass(frozen=True, order=True)
class Rule:
    """One ALLOW ACL: `principal` may `operation` on the `resource_type` named `name` (literally)."""

    principal: str
    operation: str
    resource_type: str
    name: str

    def __str__(self) -> str:
        return f"ALLOW {self.principal:24} {self.operation:16} {self.resource_type:7} {self.name}"

    def to_kafka(self) -> ACL:
        return ACL(
            principal=self.principal,
            host="*",
            operation=ACLOperation[self.operation],
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                ResourceType[self.resource_type], self.name, ACLResourcePatternType.LITERAL
            ),
        )


def _writers(principals: Iterable[str], names: Iterable[str]) -> list[Rule]:
    # DESCRIBE lets the producer fetch the topic's metadata; WRITE is enough for an idempotent
    # producer on Kafka 2.8+ (older brokers want IDEMPOTENT_WRITE on the cluster too).
    return [
        Rule(principal, operation, "TOPIC", name)
        for principal in principals
        for name in sorted(names)
        for operation in ("WRITE", "DESCRIBE")
    ]


def platform_acls(
    *, clients: Iterable[str], integrations: Iterable[str], platform: Iterable[str], group: str
) -> list[Rule]:
    """Every ACL, by principal set. Anything not allowed here is denied once the broker runs an
    authorizer with `allow.everyone.if.no.acl.found=false`: clients cannot write a gated or a
    platform topic, integrations cannot write the platform's outputs.
    """
    rules = _writers(clients, topics.OPEN_INPUTS) + _writers(integrations, topics.GATED_INPUTS)
    for principal in platform:
        rules += [
            # Every topic, including audit topics created later and the dead-letter topics.
            Rule(principal, "ALL", "TOPIC", ANY_NAME),
            Rule(principal, "READ", "GROUP", group),
            Rule(principal, "DESCRIBE", "GROUP", group),
            # kafka_topics --create, and idempotent producers on older brokers.
            Rule(principal, "CREATE", "CLUSTER", CLUSTER_NAME),
            Rule(principal, "DESCRIBE", "CLUSTER", CLUSTER_NAME),
            Rule(principal, "IDEMPOTENT_WRITE", "CLUSTER", CLUSTER_NAME),
        ]
    return rules
