"""The evaluation loop: resumable per-item results, sharding across `accelerate launch` processes, gathering.

Every process appends one JSON line per finished item to its own part file (`parts/results-<rank>.jsonl`), so an
interrupted run loses at most the item in flight. A re-run reads every line already written (results.jsonl and
any part files), skips those items and shares the rest round-robin over the processes. When all processes are
done, the main process merges the parts into `results.jsonl` in the data's order and writes `summary.json` and
`report.md`. The parts are gathered through the output folder, so it must be one folder every process sees (one
machine, or a shared file system).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from accelerate import PartialState
from tqdm import tqdm

from mumu.eval.report import write_report

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
PARTS = "parts"


@dataclass
class Item:
    """One benchmark item: a stable id (the resume key) and its fields."""

    id: str
    data: dict[str, Any]


class SkipItem(Exception):
    """The item cannot be evaluated (missing or unreadable media): recorded as skipped with this reason."""


@dataclass
class Plot:
    """A figure for the report: a histogram of values, or bars of label -> value."""

    title: str
    kind: str  # "hist" or "bars"
    values: list[float] | dict[str, float]
    xlabel: str = ""


class Task(Protocol):
    """A benchmark: what it reads, how one item is scored, and how the scores add up."""

    name: str

    def load(self) -> list[Item]:
        """The items, in the data's order."""

    def run(self, item: Item, items: Sequence[Item]) -> dict[str, Any]:
        """{'inputs', 'output', 'scores'} for one item (`items`: all of them, for swaps); raises SkipItem."""

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Metrics over the evaluated records (skipped ones are counted by the runner)."""

    def plots(self, records: list[dict[str, Any]], summary: dict[str, Any]) -> list[Plot]:
        """Figures for report.md."""


@dataclass
class RunResult:
    """What a call of `run_eval` did, and where the outputs are."""

    out_dir: Path
    evaluated_now: int
    already_done: int
    summary: dict[str, Any] | None = field(default=None)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """JSON lines of a results file; a torn last line (a run killed mid-write) is ignored."""
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number != len(lines):
                raise ValueError(f"{path}:{number}: not a JSON line ({e}); fix or delete the file") from e
    return records


def _done(out_dir: Path) -> dict[str, dict[str, Any]]:
    files = [out_dir / RESULTS, *sorted((out_dir / PARTS).glob("results-*.jsonl"))]
    return {record["id"]: record for path in files for record in read_lines(path)}


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()


def _outcomes(task: Task, batch: list[Item], items: Sequence[Item]) -> list[dict[str, Any] | SkipItem]:
    if len(batch) > 1:
        return task.run_batch(batch, items)
    try:
        return [task.run(batch[0], items)]
    except SkipItem as e:
        return [e]


def _evaluate(task: Task, pending: list[Item], items: Sequence[Item], part: Path, show: bool) -> None:
    """Run the items (in batches when the task has `run_batch`), appending each result as it is known."""
    size = getattr(task, "batch_size", 1) if hasattr(task, "run_batch") else 1
    with tqdm(total=len(pending), desc=task.name, unit="item", disable=not show) as bar:
        for start in range(0, len(pending), size):
            batch = pending[start:start + size]
            for item, outcome in zip(batch, _outcomes(task, batch, items), strict=True):
                skipped = isinstance(outcome, SkipItem)
                _append(part, {"id": item.id, "skipped": str(outcome)} if skipped else {"id": item.id, **outcome})
            bar.update(len(batch))


def _merge(out_dir: Path, items: Sequence[Item]) -> list[dict[str, Any]]:
    done = _done(out_dir)
    ordered = [done[item.id] for item in items if item.id in done]
    tmp = out_dir / (RESULTS + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered), encoding="utf-8")
    tmp.replace(out_dir / RESULTS)
    for part in (out_dir / PARTS).glob("results-*.jsonl"):
        part.unlink()
    return ordered


def summarize(task: Task, records: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """The task's metrics plus the runner's counts (items, evaluated, skipped with the first few reasons)."""
    skipped = [r for r in records if "skipped" in r]
    scored = [r for r in records if "skipped" not in r]
    summary: dict[str, Any] = {"task": task.name, "items": total, "evaluated": len(scored), "skipped": len(skipped)}
    if skipped:
        summary["skipped_examples"] = [f"{r['id']}: {r['skipped']}" for r in skipped[:5]]
    if scored:
        summary["metrics"] = task.summarize(scored)
    return summary


def run_eval(task: Task, out_dir: str | Path, limit: int | None = None, state: PartialState | None = None,
             meta: dict[str, Any] | None = None, log: Callable[[str], None] | None = None) -> RunResult:
    """Evaluate the items not yet in `out_dir`, this process's share of them, then (main process) report."""
    state = state or PartialState()
    out = Path(out_dir)
    items = task.load()
    if limit is not None:
        items = items[:limit]
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"item id {duplicate!r} appears more than once in the data; ids are the resume key")
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    done = _done(out)
    state.wait_for_everyone()  # every process has read the finished set before any process writes to it
    pending = [item for item in items if item.id not in done]
    mine = pending[state.process_index::state.num_processes]
    if log is not None and state.is_main_process:
        log(f"{task.name}: {len(items)} items, {len(items) - len(pending)} already done, {len(pending)} to go")
    _evaluate(task, mine, items, out / PARTS / f"results-{state.process_index}.jsonl", state.is_main_process)
    state.wait_for_everyone()
    result = RunResult(out, len(pending), len(items) - len(pending))
    if state.is_main_process:
        records = _merge(out, items)
        result.summary = summarize(task, records, len(items)) | {"run": meta or {}}
        (out / SUMMARY).write_text(json.dumps(result.summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        scored = [r for r in records if "skipped" not in r]
        write_report(out, result.summary, task.plots(scored, result.summary.get("metrics", {})) if scored else [])
    state.wait_for_everyone()
    return result
