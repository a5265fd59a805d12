"""What the book displays, and how numbers reach it: `Table` (a frame, its caption and the glue
values it yields), `Figure` (a matplotlib figure, its caption and values), and the glue itself.

Numbers reach the book as glue: tables and figures carry plain `float`/`int`/`str` values in a
flat dict (`.values`) whose keys the book's pages quote; `glue_values` glues them in a notebook.
"""
from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Every notebook of the book imports this module: tqdm.auto's warning that a kernel lacks
# ipywidgets ("IProgress not found") would print the build machine's paths on a page.
warnings.filterwarnings("ignore", message="IProgress not found")


@dataclass
class Table:
    """A table for the book: the display frame, its caption and the glue values it yields."""

    frame: Any  # pandas.DataFrame
    values: dict[str, Any] = field(default_factory=dict)
    caption: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # further frames (e.g. comparisons)
    css_class: str = "aqa-table"  # book/_static/aqa.css styles it

    def html(self, frame: Any = None) -> str:
        """Plain HTML (no index), what the book glues. Text is escaped; a cell "61.3 [55.9, 66.4]"
        shows its interval on a second, smaller line so that the table fits a page."""
        import html as _html

        frame = (self.frame if frame is None else frame).copy()
        for col in frame.columns:  # a count column that pandas made float (a missing cell): 1000, not 1000.0
            if frame[col].dtype.kind == "f" and all(float(v).is_integer() for v in frame[col].dropna()):
                frame[col] = type(frame[col])([v if v != v else int(v) for v in frame[col]], index=frame.index,
                                              dtype=object)

        def cell(value: Any) -> str:
            if isinstance(value, bool) or type(value).__name__ == "bool_":
                return "yes" if value else "no"
            if isinstance(value, float) and math.isnan(value):
                return "—"  # a cell with no number (not scored there), not "nan"
            text = _html.escape("" if value is None else str(value))
            m = re.fullmatch(r"(\S+) (\[[^\]]+\])", text)
            if m:
                return f"{m.group(1)}<br><small>{m.group(2)}</small>"
            return re.sub(r"([_/])", r"\1<wbr>", text)  # long keys and paths may wrap after _ and /

        for col in frame.columns:
            frame[col] = frame[col].map(cell)
        frame.columns = [_html.escape(str(c)) for c in frame.columns]
        return frame.to_html(index=False, escape=False, na_rep="", border=0,
                             classes=["table", *self.css_class.split()], justify="left")

    def _repr_html_(self) -> str:
        return self.html()


@dataclass
class Figure:
    """A matplotlib figure with its caption and the glue values read off its data. Displays (and
    glues) as PNG whatever the notebook's matplotlib backend."""

    fig: Any
    values: dict[str, Any] = field(default_factory=dict)
    caption: str = ""

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fig.savefig(path, bbox_inches="tight")
        return path

    def _repr_png_(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def glue_safe(x: Any) -> Any:
    """A glue-safe plain Python value (numpy>=2 scalars break myst-nb format specs)."""
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and math.isnan(x):
        return float("nan")
    return x


def glue_values(values: Mapping[str, Any]) -> None:
    """Glue every value (plain float/int/str only) without displaying it. Returns nothing, so that a
    notebook cell ending with it prints nothing on the page (it once printed the count)."""
    from myst_nb import glue

    for key, value in values.items():
        value = glue_safe(value)
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise TypeError(f"glue value {key!r} must be a plain int, float or str, got {type(value).__name__}")
        glue(key, value, display=False)


def glue_archived(outputs: Mapping[str, dict]) -> None:
    """Glue outputs kept in an archive (`aqa_core.study.report.opt_in_sources`) as they were
    written: the same data, tables and figures included, under the same keys."""
    from IPython.display import display

    for output in outputs.values():
        display(output["data"], raw=True, metadata=output.get("metadata", {}))
