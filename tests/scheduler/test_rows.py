"""Reading an SQL egress's files into rows (Pachyderm's CSV and JSON rules), whatever the
pieces the file arrives in."""

from __future__ import annotations

import pytest

from tusk_scheduler.domain.rows import Row, RowError, RowReader, copy_csv

COLUMNS = ("id", "name", "age")


def read(data: bytes, kind: str = "CSV", picked: tuple[str, ...] = (), piece: int = 0) -> list[Row]:
    reader = RowReader(kind, "people", COLUMNS, picked)  # type: ignore[arg-type]
    rows: list[Row] = []
    step = piece or len(data) or 1
    for start in range(0, len(data), step):
        rows += reader.feed(data[start : start + step])
    return rows + reader.end()


CSV = b'1,Ann,31\r\n2,"Bob ""B"", jr",\n\n3,"multi\nline",40'
CSV_ROWS = [["1", "Ann", "31"], ["2", 'Bob "B", jr', None], ["3", "multi\nline", "40"]]


@pytest.mark.parametrize("piece", [0, 1, 3, 7])
def test_csv_without_columns_is_in_the_tables_order(piece: int) -> None:
    assert read(CSV, piece=piece) == CSV_ROWS


@pytest.mark.parametrize("piece", [0, 1, 5])
def test_csv_with_columns_reads_a_header_in_any_order(piece: int) -> None:
    reader = RowReader("CSV", "people", COLUMNS, ("id", "name"))
    data = b"name,id\nAnn,1\nBob,2\n"
    rows: list[Row] = []
    for start in range(0, len(data), piece or len(data)):
        rows += reader.feed(data[start : start + (piece or len(data))])
    assert rows + reader.end() == [["Ann", "1"], ["Bob", "2"]]
    assert reader.columns == ("name", "id")


@pytest.mark.parametrize(
    ("data", "picked", "message"),
    [
        (b"1,Ann\n", (), "line 1: 2 values, but table people has 3 columns (id, name, age)"),
        (b'1,"Ann,31\n', (), "line 1: a quoted value is never closed"),
        (b"1,Ann,31\n\xff\n", (), "line 2: not UTF-8 text"),
        (b"id,nom\n1,Ann\n", ("id", "name"), "the header names id, nom; egress.sql_database"),
        (b"name,id\n1\n", ("id", "name"), "line 2: 1 values, but the header names 2 columns"),
    ],
)
def test_bad_csv_says_which_line_and_why(
    data: bytes, picked: tuple[str, ...], message: str
) -> None:
    with pytest.raises(RowError) as caught:
        read(data, picked=picked)
    assert message in str(caught.value)


def test_columns_must_be_columns_of_the_table() -> None:
    with pytest.raises(RowError, match=r"names 'nom', not a column of table people"):
        RowReader("CSV", "people", COLUMNS, ("id", "nom"))


@pytest.mark.parametrize("piece", [0, 2])
def test_json_lines_name_their_columns(piece: int) -> None:
    data = b'{"id": 1, "name": "Ann", "age": 31}\n\n{"name": "Bob", "id": 2, "age": null}\n'
    assert read(data, "JSON", piece=piece) == [["1", "Ann", "31"], ["2", "Bob", None]]


def test_json_with_columns_picks_them_and_leaves_other_keys() -> None:
    data = b'{"id": 1, "name": "Ann", "tags": ["a"], "ok": true}\n'
    reader = RowReader("JSON", "people", ("id", "name", "tags", "ok"), ("id", "tags", "ok"))
    assert reader.feed(data) + reader.end() == [["1", '["a"]', "true"]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"id": 1, "nom": "Ann"}\n', "line 1: 'nom' is not a column of table people"),
        (b'{"id": 1}\n[1, 2]\n', "line 2: a JSON object is expected"),
        (b'{"id": 1\n', "line 1: not JSON"),
    ],
)
def test_bad_json_says_which_line_and_why(data: bytes, message: str) -> None:
    with pytest.raises(RowError) as caught:
        read(data, "JSON")
    assert message in str(caught.value)


def test_copy_csv_tells_null_from_empty_text() -> None:
    assert copy_csv([["1", None, 'say "hi"'], ["", "a,b", "x\ny"]]) == (
        b'"1",,"say ""hi"""\n"","a,b","x\ny"\n'
    )


@pytest.mark.parametrize("piece", [0, 1, 5])
@pytest.mark.parametrize(
    ("kind", "picked", "data", "lines"),
    [
        ("CSV", (), CSV, [1, 2, 4]),  # a blank line 3; row 3 spans lines 4 and 5
        ("CSV", ("name", "id"), b'name,id\n"a\nb",1\n\nc,2\n', [2, 5]),
        ("JSON", (), b'{"id": 1}\n\n{"id": 2}\n', [1, 3]),
    ],
)
def test_each_row_says_the_line_it_begins_on(
    kind: str, picked: tuple[str, ...], data: bytes, lines: list[int], piece: int
) -> None:
    reader = RowReader(kind, "people", COLUMNS, picked)  # type: ignore[arg-type]
    seen: list[int] = []
    step = piece or len(data)
    for start in range(0, len(data), step):
        rows = reader.feed(data[start : start + step])
        assert len(reader.lines) == len(rows)
        seen += reader.lines
    rows = reader.end()
    assert len(reader.lines) == len(rows)
    assert seen + reader.lines == lines
