"""Birth and will on the ``state`` topic (design §5): retained, QoS 1, paired by the bdSeq number.

Before every connection attempt the birth sequence number (bdSeq) is advanced and saved, and the
will is set to an offline StateReport carrying it. Once connected, the online StateReport with
the same bdSeq is published retained. When the connection dies without a clean goodbye, the
broker publishes the will, so the retained state turns offline with the bdSeq of the birth it
ends; a late will of an older session carries an older bdSeq and the platform can ignore it.

The bdSeq lives in a small file (``{state_dir}/bdseq``), replaced atomically: the will is built
in the MQTT network thread, which holds no database connection.

Wiring::

    birth = Birth(topics, BirthInfo(agent_version, model, config_version), BdSeqFile(state_dir))
    transport = start_with_birth(config.mqtt, client_id, birth)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.config import MqttConfig
from agent.contract.payloads import ModelVersion, StateReport
from agent.contract.topics import Topics
from agent.sync.mqtt import PahoTransport, WillSpec
from agent.sync.transport import Delivery, Transport, TransportError

logger = logging.getLogger(__name__)

BDSEQ_FILE = "bdseq"
BDSEQ_LIMIT = 2**32
STATE_QOS = 1


class BdSeqFile:
    """The birth sequence number, kept in ``{state_dir}/bdseq`` as decimal text."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / BDSEQ_FILE

    def current(self) -> int | None:
        """The last number handed out, or None before the first (or if the file is unreadable)."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("cannot read %s (%s); starting the birth sequence again", self.path, exc)
            return None
        if not text.isdigit() or int(text) >= BDSEQ_LIMIT:
            logger.warning("%s holds %r, not a birth sequence number; starting again", self.path, text[:20])
            return None
        return int(text)

    def advance(self) -> int:
        """Hand out the next number (0 first, wrapping at 2**32) and save it before returning."""
        last = self.current()
        value = 0 if last is None else (last + 1) % BDSEQ_LIMIT
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{BDSEQ_FILE}.tmp")
        with tmp.open("w", encoding="ascii") as handle:
            handle.write(f"{value}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        return value


@dataclass(frozen=True)
class BirthInfo:
    """What a birth says besides online and bdSeq."""

    agent_version: str
    model: ModelVersion | None
    config_version: str
    """Hex sha256 of the applied config."""


class Birth:
    """Builds the will before each connection attempt and publishes the birth after each connect."""

    def __init__(
        self,
        topics: Topics,
        info: BirthInfo,
        seq: BdSeqFile,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topics = topics
        self.info = info
        self._seq = seq
        self._clock = clock
        self._bd_seq: int | None = None

    @property
    def bd_seq(self) -> int | None:
        """The bdSeq of the current (or last attempted) connection."""
        return self._bd_seq

    def report(self, online: bool) -> StateReport:
        """The state payload for the current bdSeq."""
        if self._bd_seq is None:
            raise RuntimeError("no connection attempt yet: call will() first")
        return StateReport(
            device=self.topics.device,
            sent_at=self._clock(),
            online=online,
            bd_seq=self._bd_seq,
            agent_version=self.info.agent_version,
            model=self.info.model,
            config_version=self.info.config_version,
        )

    def will(self) -> WillSpec:
        """Advance bdSeq and return the offline will for the next connection attempt."""
        self._bd_seq = self._seq.advance()
        payload = self.report(online=False).to_json().encode("utf-8")
        logger.debug("will for bdSeq %d set", self._bd_seq)
        return (self.topics.state, payload, STATE_QOS, True)

    def announce(self, transport: Transport) -> Delivery | None:
        """Publish the online birth (retained, QoS 1) with the bdSeq of the will just sent.

        Runs in the network thread right after a connect, so it does not wait for the PUBACK.
        """
        payload = self.report(online=True).to_json().encode("utf-8")
        try:
            delivery = transport.publish(self.topics.state, payload, STATE_QOS, True)
        except TransportError as exc:
            logger.warning("birth (bdSeq %s) not published: %s", self._bd_seq, exc)
            return None
        logger.info("published birth with bdSeq %s", self._bd_seq)
        return delivery


def start_with_birth(
    config: MqttConfig,
    client_id: str,
    birth: Birth,
    on_connect: Callable[[], None] | None = None,
) -> PahoTransport:
    """A started PahoTransport whose will and birth come from ``birth``; ``on_connect`` runs after."""
    holder: list[PahoTransport] = []

    def connected() -> None:
        birth.announce(holder[0])
        if on_connect is not None:
            on_connect()

    transport = PahoTransport(config, client_id, will=birth.will, on_connect=connected)
    holder.append(transport)
    return transport.start()
