import math

from nas.results.table import format_cell, text_table


def test_missing_values_print_as_a_dash():
    assert [format_cell(v) for v in (None, math.nan, 0, "a")] == ["-", "-", "0", "a"]
    assert format_cell(1234567, ",") == "1,234,567"


def test_numbers_are_right_aligned_and_text_left_aligned_under_their_headers():
    rows = [{"model": "mobilevit_xxs", "params": 1272024, "top-1": 69.0},
            {"model": "s", "params": 5578632, "top-1": None}]
    table = text_table(rows, ["model", "params", "top-1"], {"params": ","})
    assert table.splitlines() == [
        "model             params  top-1",
        "mobilevit_xxs  1,272,024   69.0",
        "s              5,578,632      -",
    ]


def test_a_column_missing_from_every_row_is_all_dashes_and_no_rows_is_a_header():
    assert text_table([{"a": 1}], ["a", "b"]).splitlines() == ["a  b", "1  -"]
    assert text_table([], ["a", "b"]) == "a  b"
