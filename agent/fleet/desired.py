"""Desired config: validate a document like the local file, then write it atomically in its place.

The document is checked with the same validator as the file the agent was started with
(``agent.config.load_config``, which also resolves relative paths against the config's folder and
checks the files it names), from a temporary file beside the config. Only a valid document that
keeps ``[device]`` and ``storage.database`` (which need a restart) and ``[fleet]`` (without it the
device could take no further command) replaces the file: fsync,
rename over it, fsync the folder. A rejected document leaves the file untouched.

A document that leaves out ``[device]`` or ``[fleet]`` keeps the device's own sections (read from
the file in force): so one document can be rolled out to many devices, each keeping its identity,
its state folder and its fleet groups.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, ConfigError, ConfigProblem, load_config
from agent.contract.payloads import WORD_PATTERN
from agent.durable import fsync_folder
from agent.fleet.bodies import ConfigBody
from agent.fleet.toml_text import to_toml

logger = logging.getLogger(__name__)


OWN_SECTIONS = ("device", "fleet")
"""Sections a desired document may leave out: the device keeps its own."""
_WORD = re.compile(WORD_PATTERN)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class ConfigRejected(ValueError):
    """A desired config that cannot be applied; ``problems`` name the keys."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(problem) for problem in problems))

    def key_paths(self) -> list[str]:
        """The problems' key paths as dotted words (``camera.lines.entrance.a``), for the wire."""
        return [dotted(problem.path) for problem in self.problems][:64]


def dotted(path: str) -> str:
    """``camera -> lines -> a`` as ``camera.lines.a``; ``(syntax)`` as ``_syntax``; unsafe characters as '_'."""
    text = path.replace(" -> ", ".")
    if text.startswith("(") and text.endswith(")"):
        text = "_" + text[1:-1].replace(" ", "_")
    text = _UNSAFE.sub("_", text)[:64] or "_"
    return text if _WORD.match(text) else "_"


@dataclass(frozen=True)
class Applied:
    """A desired config now on disk: the validated config and the text written."""

    config: AgentConfig
    text: str


def document_text(body: ConfigBody) -> str:
    """The desired document as TOML text (an object is written as TOML)."""
    if body.toml is not None:
        return body.toml
    try:
        return to_toml(body.config or {})
    except ValueError as exc:
        raise ConfigRejected([ConfigProblem("(document)", "", str(exc))]) from None


def write_desired(body: ConfigBody, config_path: Path, current: AgentConfig) -> Applied:
    """Validate the desired document and, if it is usable, replace ``config_path`` with it atomically.

    Raises ConfigRejected naming the bad keys; then ``config_path`` is unchanged.
    """
    text = document_text(body)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigRejected([ConfigProblem("(syntax)", "", f"not valid TOML: {exc}")]) from None
    text = _with_own_sections(text, document, config_path)
    folder = config_path.parent
    tmp = folder / f".{config_path.name}.desired-{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            new = load_config(tmp)
        except ConfigError as exc:
            raise ConfigRejected(exc.problems) from None
        if new.device != current.device or new.database_path != current.database_path:
            raise ConfigRejected(
                [ConfigProblem("device", "", "[device] and storage.database change only with a restart")]
            )
        if current.fleet is not None and new.fleet is None:
            raise ConfigRejected([ConfigProblem("fleet", "", "a desired config must keep [fleet] (it came by fleet)")])
        os.replace(tmp, config_path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_folder(folder)
    logger.info("desired config version %d written to %s", body.version, config_path)
    return Applied(new, text)


def _with_own_sections(text: str, document: dict[str, Any], config_path: Path) -> str:
    """``text``, or when it lacks ``[device]`` or ``[fleet]``, the document with the file's own written as TOML."""
    missing = [name for name in OWN_SECTIONS if name not in document]
    if not missing:
        return text
    try:
        own = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return text  # the validator then names what is missing
    kept = {name: own[name] for name in missing if name in own}
    if not kept:
        return text
    try:
        return to_toml(kept | document)
    except ValueError as exc:
        raise ConfigRejected([ConfigProblem("(document)", "", str(exc))]) from None
