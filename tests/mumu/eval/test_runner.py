"""The runner: each process takes its share, the main process gathers in the data's order, skips are reported."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

import pytest

from mumu.eval.runner import RESULTS, SUMMARY, Item, Plot, SkipItem, read_lines, run_eval


@dataclass
class FakeState:
    """accelerate.PartialState's surface the runner uses; processes are threads meeting at a barrier."""

    process_index: int
    num_processes: int
    barrier: threading.Barrier | None = field(default=None, repr=False)

    @property
    def is_main_process(self) -> bool:
        return self.process_index == 0

    def wait_for_everyone(self) -> None:
        if self.barrier is not None:
            self.barrier.wait(timeout=30)


class Squares:
    name = "squares"

    def __init__(self, n: int) -> None:
        self.n = n
        self.ran: list[str] = []

    def load(self):
        return [Item(f"i{k}", {"x": k}) for k in range(self.n)]

    def run(self, item, items):
        self.ran.append(item.id)
        if item.data["x"] == 3:
            raise SkipItem("x is 3")
        return {"inputs": item.data, "output": item.data["x"] ** 2, "scores": {"value": item.data["x"] ** 2}}

    def summarize(self, records):
        return {"sum": sum(r["scores"]["value"] for r in records)}

    def plots(self, records, summary):
        return [Plot("Values", "hist", [r["scores"]["value"] for r in records])]


def test_two_processes_split_the_items_and_the_main_one_gathers_them_in_order(tmp_path):
    worker, main = Squares(7), Squares(7)
    barrier = threading.Barrier(2)
    results = {}
    threads = [threading.Thread(target=lambda t=task, r=rank: results.__setitem__(
        r, run_eval(t, tmp_path, state=FakeState(r, 2, barrier)))) for rank, task in enumerate((main, worker))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = results[0]
    assert results[1].summary is None  # only the main process reports
    assert worker.ran == ["i1", "i3", "i5"] and main.ran == ["i0", "i2", "i4", "i6"]
    assert [r["id"] for r in read_lines(tmp_path / RESULTS)] == [f"i{k}" for k in range(7)]
    summary = json.loads((tmp_path / SUMMARY).read_text())
    assert summary == result.summary
    assert summary["metrics"] == {"sum": 0 + 1 + 4 + 16 + 25 + 36} and summary["skipped_examples"] == ["i3: x is 3"]
    assert (tmp_path / "plots" / "values.png").stat().st_size > 0


def test_a_rerun_evaluates_nothing_twice_and_limit_takes_the_first_items(tmp_path):
    first = Squares(5)
    run_eval(first, tmp_path, limit=3, state=FakeState(0, 1))
    assert first.ran == ["i0", "i1", "i2"]
    again = Squares(5)
    result = run_eval(again, tmp_path, state=FakeState(0, 1))
    assert again.ran == ["i3", "i4"] and result.already_done == 3 and result.summary["items"] == 5


def test_duplicate_ids_are_refused(tmp_path):
    task = Squares(2)
    task.load = lambda: [Item("same", {"x": 1}), Item("same", {"x": 2})]
    with pytest.raises(ValueError, match="'same' appears more than once"):
        run_eval(task, tmp_path, state=FakeState(0, 1))
