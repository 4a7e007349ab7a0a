"""What each coupon command does, through the coupon desk (the one audited entry point)."""

from __future__ import annotations

import logging

from agent import __version__
from agent.config import AgentConfig
from agent.coupons.desk import CouponDesk
from agent.fleet.bodies import EraseBody, IssuerKeyBody, PingBody, RevokeBody, _Body
from agent.fleet.jobs import Details
from agent.storage.audit import Actor

logger = logging.getLogger(__name__)

DESK_TYPES = frozenset({"revoke", "issuer_keys", "erase"})


def run_desk_command(config: AgentConfig, body: _Body, actor: Actor, now: float) -> Details:
    """Apply a revoke, issuer_keys or erase body at the desk; return the job's details.

    Raises ValueError when the desk refuses it.
    """
    with CouponDesk.from_config(config) as desk:
        if isinstance(body, RevokeBody):
            revocation = desk.revoke(actor, serials=body.serials, campaigns=body.campaigns, now=now)
            return {"serials": revocation.serials, "campaigns": revocation.campaigns}
        if isinstance(body, IssuerKeyBody):
            if body.action == "add":
                desk.add_issuer_key(body.key_id, body.raw_key(), actor, now=now)
            else:
                desk.retire_issuer_key(body.key_id, actor, now=now)
            return {"key_id": body.key_id, "action": body.action}
        if isinstance(body, EraseBody):
            erasure = desk.erase(body.serial, actor, now=now)
            return {
                "removed": sum(erasure.removed.values()),
                "kept_undelivered": erasure.kept_undelivered,
                "tombstoned": erasure.tombstoned,
            }
    raise ValueError(f"{type(body).__name__} is not a desk command")


def ping_details(body: PingBody) -> Details:
    """A ping's answer: the agent's version."""
    return {"agent_version": __version__.split("+")[0]}
