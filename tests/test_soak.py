"""bench.soak's bookkeeping: which cycles get which fault, and how a fault counts as recovered or lost."""

from __future__ import annotations

import random

from bench.soak import FAULTS, Cycle, fault_plan, summarise


def test_the_plan_starts_clean_then_alternates_each_fault_kind_with_a_clean_cycle():
    plan = fault_plan(11, random.Random(0))
    assert plan[0::2] == [None] * 6
    assert sorted(plan[1::2]) == sorted(FAULTS)  # one round: every kind once
    assert plan == fault_plan(11, random.Random(0))  # seeded


def cycle(number, fault, state="COMPLETED", tasks="0 ran, 7 cached", equal=True, growth=0, **kw):
    return Cycle(number, fault, state=state, tasks=tasks, metrics_equal=None if state != "COMPLETED" else equal, growth_bytes=growth, **kw)


def test_a_kill_is_judged_by_the_next_cycle_other_faults_by_their_own():
    results = [
        cycle(1, None, tasks="7 ran, 0 cached", growth=670_000),
        cycle(2, "kill -9", state="CRASHED", growth=120_000),
        cycle(3, None, tasks="2 ran, 5 cached", growth=300_000),
        cycle(4, "deleted stage folder", tasks="1 ran, 6 cached", growth=50_000),
        cycle(5, None, growth=170_000),
        cycle(6, "second run", equal=False, growth=180_000),  # metrics differ from the clean cycle's: lost
        cycle(7, "truncated artifact", damaged_folders=1),  # a damaged folder left behind: lost
    ]
    assert summarise(results) == "\n".join(
        [
            "cycles: 7 (6 completed, 1 crashed by kill -9)",
            "",
            "| fault | injected | recovered | lost |",
            "|---|---:|---:|---:|",
            "| kill -9 | 1 | 1 | 0 |",
            "| truncated artifact | 1 | 0 | 1 |",
            "| deleted stage folder | 1 | 1 | 0 |",
            "| second run | 1 | 0 | 1 |",
            "| all | 4 | 2 | 2 |",
            "",
            "stale locks after any cycle: 0; runs left RUNNING by a killed one: 0; damaged stage folders a cycle used: 1; "
            "damaged and used by no later run (left for recflow gc): 0",
            "disk growth per unchanged cycle (0 tasks ran; root without the Prefect server's db/logs): 0.17 MB",
            "disk growth per cycle, all: 0.67, 0.12, 0.30, 0.05, 0.17, 0.18, 0.00 MB",
        ]
    )


def test_a_kill_that_came_after_the_run_ended_is_reported_as_missed_not_as_recovered():
    results = [cycle(1, None), cycle(2, "kill -9", note="missed: pid 7 had already finished 9.0 s in"), cycle(3, None)]
    lines = summarise(results).splitlines()
    assert "| kill -9 |" not in summarise(results)
    assert "| all | 0 | 0 | 0 |" in lines
    assert "(kill -9 missed, the run had already ended: 1, not counted)" in lines
