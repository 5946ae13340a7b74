"""The benchmark's markdown tables: rows of different sections keep their own columns."""

from clients.bench.report import table


def test_rows_with_different_keys_get_one_column_each():
    rows = [{"strategy": "nudging", "ratio": 3.0891, "nudge_ratio": 0.5},
            {"strategy": "rain", "ratio": 40.0, "searches_per_set": 30}]
    lines = table(rows).splitlines()
    assert lines[0] == "| strategy | ratio | nudge_ratio | searches_per_set |"
    assert lines[2] == "| nudging | 3.09 | 0.5 |  |"
    assert lines[3] == "| rain | 40 |  | 30 |"
