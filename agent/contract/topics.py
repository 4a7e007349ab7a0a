"""MQTT topic names of the v1 contract for one device, built from validated segments."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agent.contract.kinds import MessageKind, parse_kind

logger = logging.getLogger(__name__)

VERSION = "v1"
ROOT = "retail"
MAX_SEGMENT = 64


class InvalidTopicSegment(ValueError):
    """A tenant, store, device or job id cannot be used as one level of an MQTT topic."""


def check_segment(value: str, what: str) -> str:
    """Return ``value`` if it is safe as one topic level, else raise InvalidTopicSegment.

    Refused: empty, longer than 64 characters, the separator '/', the wildcards '+' and '#',
    control characters, and a leading '$' or '_' ('$' is the broker's, '_' marks store and
    fleet levels such as ``_store``).
    """
    if not isinstance(value, str) or not value:
        raise InvalidTopicSegment(f"{what} must be a non-empty string")
    if len(value) > MAX_SEGMENT:
        raise InvalidTopicSegment(f"{what} {value!r} is longer than {MAX_SEGMENT} characters")
    for char in ("/", "+", "#"):
        if char in value:
            raise InvalidTopicSegment(f"{what} {value!r} must not contain {char!r}")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise InvalidTopicSegment(f"{what} {value!r} must not contain control characters")
    if value[0] in "$_":
        raise InvalidTopicSegment(f"{what} {value!r} must not start with {value[0]!r}")
    return value


@dataclass(frozen=True)
class Topics:
    """The topics one device publishes and subscribes to (design §5, contract v1)."""

    tenant: str
    store: str
    device: str

    def __post_init__(self) -> None:
        check_segment(self.tenant, "tenant")
        check_segment(self.store, "store")
        check_segment(self.device, "device")

    @property
    def store_prefix(self) -> str:
        """``retail/v1/{tenant}/{store}``."""
        return f"{ROOT}/{VERSION}/{self.tenant}/{self.store}"

    @property
    def prefix(self) -> str:
        """``retail/v1/{tenant}/{store}/{device}``: everything this device may publish is below it."""
        return f"{self.store_prefix}/{self.device}"

    @property
    def state(self) -> str:
        """Birth and will (QoS 1, retained)."""
        return f"{self.prefix}/state"

    @property
    def traffic(self) -> str:
        """Foot-traffic window aggregates."""
        return f"{self.prefix}/traffic"

    @property
    def coupons(self) -> str:
        """Noised coupon window aggregates per campaign."""
        return f"{self.prefix}/coupons"

    @property
    def consultations(self) -> str:
        """Noised consultation window aggregates per category and outcome."""
        return f"{self.prefix}/consultations"

    @property
    def ledger(self) -> str:
        """Redemption records for settlement."""
        return f"{self.prefix}/ledger"

    @property
    def health(self) -> str:
        """Rates, resources, outbox depth and errors (QoS 0)."""
        return f"{self.prefix}/health"

    def jobs(self, job_id: str) -> str:
        """Execution status of one fleet job."""
        return f"{self.prefix}/jobs/{check_segment(job_id, 'job id')}"

    @property
    def config_reported(self) -> str:
        """The applied config version or its rejection (QoS 1, retained)."""
        return f"{self.prefix}/config/reported"

    @property
    def cmd(self) -> str:
        """The subscription for signed commands to this device: ``{prefix}/cmd/#``."""
        return f"{self.prefix}/cmd/#"

    def command(self, command_type: str) -> str:
        """Where an operator publishes a command of ``command_type`` for this device: ``{prefix}/cmd/{type}``."""
        return f"{self.prefix}/cmd/{check_segment(command_type, 'command type')}"

    def fleet_cmd(self, group: str) -> str:
        """The subscription for a fleet group's commands: ``retail/v1/{tenant}/_fleet/{group}/cmd/#``."""
        return f"{fleet_prefix(self.tenant, group)}/cmd/#"

    def artifact_chunks(self, sha256: str) -> str:
        """The subscription for one artifact's retained chunks: ``retail/v1/{tenant}/_artifacts/{sha256}/+``."""
        return f"{artifact_prefix(self.tenant, sha256)}/+"

    @property
    def store_redeemed(self) -> str:
        """Serials redeemed anywhere in the store: ``retail/v1/{tenant}/{store}/_store/redeemed``."""
        return f"{self.store_prefix}/_store/redeemed"

    def topic(self, kind: MessageKind | str, route: str = "") -> str:
        """The full topic of an outbound message of ``kind``; ``route`` is the job id for ``jobs``.

        Raises ValueError for an unknown kind and InvalidTopicSegment for a route that is missing,
        not a valid topic level, or given for a kind that has none.
        """
        checked = check_route(kind, route)
        return self._resolve(checked, route)

    def _resolve(self, kind: MessageKind, route: str) -> str:
        match kind:
            case MessageKind.STATE:
                return self.state
            case MessageKind.TRAFFIC:
                return self.traffic
            case MessageKind.COUPONS:
                return self.coupons
            case MessageKind.CONSULTATIONS:
                return self.consultations
            case MessageKind.LEDGER:
                return self.ledger
            case MessageKind.HEALTH:
                return self.health
            case MessageKind.JOBS:
                return self.jobs(route)
            case MessageKind.CONFIG_REPORTED:
                return self.config_reported
            case MessageKind.STORE_REDEEMED:
                return self.store_redeemed


def fleet_prefix(tenant: str, group: str) -> str:
    """``retail/v1/{tenant}/_fleet/{group}``: where a fleet group's commands are published."""
    return f"{ROOT}/{VERSION}/{check_segment(tenant, 'tenant')}/_fleet/{check_segment(group, 'group')}"


def artifact_prefix(tenant: str, sha256: str) -> str:
    """``retail/v1/{tenant}/_artifacts/{sha256}``: the folder of one artifact's retained chunks."""
    if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise InvalidTopicSegment(f"artifact sha256 {str(sha256)[:70]!r} must be 64 lowercase hex characters")
    return f"{ROOT}/{VERSION}/{check_segment(tenant, 'tenant')}/_artifacts/{sha256}"


def artifact_chunk(tenant: str, sha256: str, index: int) -> str:
    """Where chunk ``index`` (from 0) of an artifact is retained: ``.../_artifacts/{sha256}/{index}``."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidTopicSegment(f"chunk index {index!r} must be a whole number from 0")
    return f"{artifact_prefix(tenant, sha256)}/{index}"


def chunk_index(topic: str) -> int | None:
    """The chunk index at the end of an artifact chunk topic, or None when it is not one."""
    last = topic.rsplit("/", 1)[-1]
    if not last.isascii() or not last.isdigit() or len(last) > 9 or (len(last) > 1 and last[0] == "0"):
        return None
    return int(last)


def check_route(kind: MessageKind | str, route: str) -> MessageKind:
    """Check that ``route`` fits ``kind`` (a topic level for ``jobs``, empty otherwise); return the kind."""
    checked = kind if isinstance(kind, MessageKind) else parse_kind(kind)
    if checked.routed:
        check_segment(route, f"route of {checked.value}")
    elif route != "":
        raise InvalidTopicSegment(f"a {checked.value} message has no route, got {str(route)[:MAX_SEGMENT]!r}")
    return checked
