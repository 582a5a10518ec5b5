"""What every report shares: markdown tables, matplotlib set up for files, a colour per method.

    markdown_table(header, rows)        -> the table's lines ("| a | b |", "| --- | --- |", ...)
    start_matplotlib()                  -> pyplot, on the Agg backend (files only, no display)
    save_figure(fig, path)              -> PNG at DPI dots per inch, laid out tight, then closed
    method_colour(name)                 -> the colour a method has in every figure
    lighter(colour)                     -> a lighter shade of it (e.g. the method with PLOT)

Used by the evaluation's, the sweep's and the demo's reports (plot_ray.eval.report,
plot_ray.tune.report, plot_ray.demo.report and plot_ray.demo.figures); it imports nothing from
plot_ray, and matplotlib only when a figure is drawn.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "DPI",
    "METHOD_COLOURS",
    "TAB10",
    "lighter",
    "markdown_table",
    "method_colour",
    "save_figure",
    "start_matplotlib",
]

DPI = 120  # the figures' resolution, dots per inch
# matplotlib's default colour cycle ("C0".."C9"), by name
TAB10 = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:gray",
    "tab:olive",
    "tab:cyan",
)
# The methods of plot_ray.losses.methods, DEFT (drawn beside PLOT as a method of its own) and the
# base model: the same colour in every figure (dpo and aot first: the colours the default demo
# profile's figures always had).
METHOD_COLOURS = {
    "dpo": "tab:blue",
    "aot": "tab:orange",
    "sft": "tab:green",
    "pro": "tab:red",
    "ipo": "tab:purple",
    "simpo": "tab:brown",
    "orpo": "tab:pink",
    "deft": "tab:olive",
    "base": "black",
}
_SPARE = tuple(c for c in TAB10 if c not in METHOD_COLOURS.values())  # for other methods
_ALIGN = {None: "---", "left": ":---", "center": ":---:", "right": "---:"}


def markdown_table(
    header: Sequence[Any],
    rows: Iterable[Sequence[Any]],
    align: Sequence[str | None] | None = None,
    *,
    compact: bool = False,
) -> list[str]:
    """A markdown table's lines: the header, the separator, then one line per row, each cell
    written with ``str`` (cells are not escaped: a ``|`` inside one splits it).

    ``align``: per column ``None`` (the renderer's default), ``"left"``, ``"center"`` or
    ``"right"``. ``compact`` writes the separator without spaces (``|---|---|``) instead of
    ``| --- | --- |``; the header and rows always read ``| a | b |``."""
    marks = [_ALIGN[a] for a in (align or [None] * len(header))]
    if len(marks) != len(header):
        raise ValueError(f"align has {len(marks)} entries for {len(header)} columns")
    separator = "|" + "".join(f"{m}|" for m in marks) if compact else _line(marks)
    return [_line(header), separator, *(_line(row) for row in rows)]


def _line(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def start_matplotlib():
    """``matplotlib.pyplot`` on the Agg backend (PNG files, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = DPI) -> Path:
    """Lay ``fig`` out tight, write it to ``path`` as PNG at ``dpi`` and close it; returns the
    path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi, format="png")
    plt.close(fig)
    return Path(path)


def method_colour(name: str) -> str:
    """The colour of method ``name`` (case-insensitive) in every figure: a fixed one for the
    known methods and the base model (:data:`METHOD_COLOURS`), else one of the :data:`TAB10`
    colours no known method has, chosen by the name itself (the same in every figure and run;
    two such methods may share it)."""
    key = name.lower()
    if key in METHOD_COLOURS:
        return METHOD_COLOURS[key]
    return _SPARE[zlib.crc32(key.encode()) % len(_SPARE)]


def lighter(colour: str, amount: float = 0.45) -> tuple[float, float, float]:
    """``colour`` mixed with white (``amount`` 0: itself, 1: white): a variant of a method
    (e.g. with PLOT) drawn in its method's colour."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return (r + (1.0 - r) * amount, g + (1.0 - g) * amount, b + (1.0 - b) * amount)
