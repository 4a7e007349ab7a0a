"""Kinds of outbound message: what a message reports, independent of where it is published.

Domain code queues a message by kind (and, for ``jobs``, a route: the job id); the sync side
resolves kind and route to the full topic with the device's ``Topics`` when it publishes. So
nothing outside the contract and sync needs to know a topic name.
"""

from __future__ import annotations

import logging
from enum import StrEnum

logger = logging.getLogger(__name__)


class MessageKind(StrEnum):
    """An outbound message kind; the value is what the outbox stores."""

    STATE = "state"
    TRAFFIC = "traffic"
    COUPONS = "coupons"
    CONSULTATIONS = "consultations"
    LEDGER = "ledger"
    HEALTH = "health"
    JOBS = "jobs"
    CONFIG_REPORTED = "config_reported"
    STORE_REDEEMED = "store_redeemed"

    @property
    def routed(self) -> bool:
        """Whether the kind's topic has a routing level (the job id of ``jobs/{job_id}``)."""
        return self is MessageKind.JOBS


SCHEMA_KINDS: dict[str, MessageKind] = {
    "state.v1": MessageKind.STATE,
    "traffic.v1": MessageKind.TRAFFIC,
    "coupons.v1": MessageKind.COUPONS,
    "consultations.v1": MessageKind.CONSULTATIONS,
    "ledger.v1": MessageKind.LEDGER,
    "health.v1": MessageKind.HEALTH,
    "store_redeemed.v1": MessageKind.STORE_REDEEMED,
    "jobs.v1": MessageKind.JOBS,
    "config_reported.v1": MessageKind.CONFIG_REPORTED,
}
"""The kind each payload schema is sent as."""


def kind_of_schema(schema: str) -> MessageKind | None:
    """The kind a payload with this ``schema`` value is sent as, or None for a schema without one."""
    return SCHEMA_KINDS.get(schema)


def parse_kind(value: str) -> MessageKind:
    """The MessageKind named ``value``; ValueError naming the allowed kinds otherwise."""
    try:
        return MessageKind(value)
    except ValueError:
        allowed = ", ".join(kind.value for kind in MessageKind)
        raise ValueError(f"unknown message kind {str(value)[:64]!r}; expected one of {allowed}") from None
