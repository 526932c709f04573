"""bench.quality --report keys each row by the settings it measured (issue 26, point 10)."""

from __future__ import annotations

from bench.quality import by_settings, record, recorded, settings_difference, settings_id, table


def run(seed: int, l2: float, recall: float) -> dict:
    settings = {"name": "ease", "l2": l2}
    return {"kind": "run", "preset": "p", "model": "ease", "seed": seed, "settings": settings, "settings_id": settings_id(settings), "recall_at_10": recall}


def test_runs_under_two_overlays_are_two_rows_named_by_what_differs(tmp_path, capsys):
    for row in (run(0, 500.0, 0.30), run(1, 500.0, 0.32), run(0, 900.0, 0.20)):
        record(tmp_path, row)
    rows = recorded(tmp_path)
    groups = by_settings(rows, "ease")
    assert {k: [r["seed"] for r in v] for k, v in groups.items()} == {
        settings_id({"name": "ease", "l2": 500.0}): [0, 1],
        settings_id({"name": "ease", "l2": 900.0}): [0],
    }
    assert sorted(settings_difference(groups).values()) == ["l2=500.0", "l2=900.0"]
    table(rows)
    out = capsys.readouterr().out
    assert f"| ease [{settings_id({'name': 'ease', 'l2': 500.0})}: l2=500.0] | 2 | 0.3100 ± 0.0141 |" in out
    assert f"| ease [{settings_id({'name': 'ease', 'l2': 900.0})}: l2=900.0] | 1 | 0.2000 |" in out


def test_one_setting_is_one_plain_row(tmp_path, capsys):
    table([run(0, 500.0, 0.30), run(0, 500.0, 0.34)])  # a seed measured twice: the latest counts
    assert "| ease | 1 | 0.3400 |" in capsys.readouterr().out
