"""report.md: the run's settings, a table of every metric, skipped items, and the figures (PNG beside it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # after use("Agg"): the backend is chosen before pyplot loads

if TYPE_CHECKING:
    from mumu.eval.runner import Plot

REPORT = "report.md"
NOTES_KEY = "notes"


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics -> {'a.b.c': value} for the numbers, strings and None (unavailable) at the leaves."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, name + ".")
        elif value is None or isinstance(value, (int, float, str)):
            flat[name] = value
    return flat


def _cell(value: Any) -> str:
    if value is None:
        return "unavailable"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _figure(plot: Plot, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if plot.kind == "hist":
        ax.hist(plot.values, bins=min(30, max(5, len(plot.values) // 2)), color="#4878a8")
        ax.set_ylabel("items")
    else:
        labels = list(plot.values)
        ax.bar(range(len(labels)), [plot.values[k] for k in labels], color="#4878a8")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_title(plot.title)
    ax.set_xlabel(plot.xlabel)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "plot"


def write_report(out_dir: Path, summary: dict[str, Any], plots: list[Plot]) -> Path:
    """Write report.md (and plots/*.png) for a summary; returns the report's path."""
    metrics = dict(summary.get("metrics", {}))
    notes = metrics.pop(NOTES_KEY, [])
    lines = [f"# `mumu eval {summary['task']}`", ""]
    run = summary.get("run", {})
    if run:
        lines += [", ".join(f"{k}: `{v}`" for k, v in run.items() if v is not None), ""]
    lines += [f"Items: {summary['items']}; evaluated: {summary['evaluated']}; skipped: {summary['skipped']}.", ""]
    for example in summary.get("skipped_examples", []):
        lines.append(f"- skipped {example}")
    if summary.get("skipped_examples"):
        lines.append("")
    lines += [f"> {note}" for note in notes] + ([""] if notes else [])
    flat = flatten(metrics)
    if flat:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_cell(v)} |" for k, v in flat.items()] + [""]
    if plots:
        (out_dir / "plots").mkdir(exist_ok=True)
    for plot in plots:
        if not plot.values:
            continue
        name = f"plots/{_slug(plot.title)}.png"
        _figure(plot, out_dir / name)
        lines += [f"![{plot.title}]({name})", ""]
    path = out_dir / REPORT
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
