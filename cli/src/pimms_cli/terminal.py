"""Terminal output people like to read: colour on a TTY, plain text in 100 columns when piped."""

from __future__ import annotations

import io
import sys
from typing import TextIO

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table

PIPED_WIDTH = 100


def console(*, file: TextIO | None = None) -> Console:
    """A console on stdout (or `file`): the terminal's width and colour, else plain 100 columns."""
    target = file or sys.stdout
    probe = Console(file=target)
    if probe.is_terminal:
        return Console(file=target, highlight=False)
    return Console(file=target, width=PIPED_WIDTH, highlight=False, color_system=None)


def render(renderable: RenderableType, *, width: int = PIPED_WIDTH) -> str:
    """The plain text of `renderable` at `width` columns (what a pipe would receive)."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, highlight=False, color_system=None).print(renderable)
    return buffer.getvalue()


def table(*headers: str, title: str | None = None) -> Table:
    """A compact table: header line, no outer box, cells wrapped to fit."""
    return Table(
        *headers,
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        header_style="bold",
        show_edge=False,
    )
