"""The fleet wiring: command topics to the fleet agent, and its periodic task in the sync thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from agent.config import AgentConfig
from agent.fleet.model_update import ModelHost
from agent.fleet.service import FleetAgent
from agent.runtime.syncing import topics_of
from agent.sync.dispatch import Dispatcher

logger = logging.getLogger(__name__)

FLEET_INTERVAL_S = 0.5


def register_fleet(
    dispatcher: Dispatcher,
    config: AgentConfig,
    *,
    current_config: Callable[[], AgentConfig] | None = None,
    config_path: Path | None = None,
    request_reload: Callable[[], None] = lambda: None,
    models: ModelHost | None = None,
) -> FleetAgent | None:
    """Take fleet commands when ``[fleet]`` and ``[mqtt]`` are configured; None otherwise.

    Subscribes the device's ``cmd/#`` and each of ``fleet.groups``; ``current_config`` gives the
    config in force after reloads (the fleet key and groups read from it; a change of groups
    needs a restart to change the subscriptions). ``models`` lets model jobs swap the detector;
    without it they are refused.
    """
    if config.fleet is None or config.mqtt is None:
        return None
    topics = topics_of(config)
    fleet = FleetAgent(
        current_config or (lambda: config),
        config_path=config_path,
        request_reload=request_reload,
        models=models,
        subscriber=dispatcher,
    )
    dispatcher.on(topics.cmd, fleet.handle, qos=1)
    for group in config.fleet.groups:
        dispatcher.on(topics.fleet_cmd(group), fleet.handle, qos=1)
    dispatcher.every("fleet", FLEET_INTERVAL_S, fleet, close=fleet.close)
    logger.info("taking signed fleet commands (groups: %s)", ", ".join(config.fleet.groups) or "none")
    return fleet
