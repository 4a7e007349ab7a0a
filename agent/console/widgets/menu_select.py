"""A drop-down menu whose open list keeps the footer as it is, so the footer fits 80 columns."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Select
from textual.widgets._select import SelectCurrent, SelectOverlay


class QuietOverlay(SelectOverlay):
    """The open list of a MenuSelect: Escape still closes it, without a footer entry of its own."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss", "Dismiss menu", show=False)]


class MenuSelect(Select[str]):
    """A Select of words; the screen's help line says that Escape closes the list."""

    def compose(self) -> ComposeResult:
        yield SelectCurrent(self.prompt)
        yield QuietOverlay(type_to_search=self._type_to_search).data_bind(compact=Select.compact)
