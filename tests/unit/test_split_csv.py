"""`tusk put --split csv`: pieces hold whole rows, unchanged, and together are the file."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tusk.errors import InvalidArgument
from tusk_cli.sources import split

FIELD = st.text(alphabet=st.sampled_from('ab,"\n é'), max_size=6)
ROWS = st.lists(st.lists(FIELD, min_size=1, max_size=3), min_size=1, max_size=12)


def written(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


@settings(max_examples=200, deadline=None)
@given(rows=ROWS, per_piece=st.integers(1, 4), header=st.integers(0, 1))
def test_pieces_are_whole_rows_that_make_up_the_file(
    tmp_path_factory: pytest.TempPathFactory, rows: list[list[str]], per_piece: int, header: int
) -> None:
    work = tmp_path_factory.mktemp("split")
    source = work / "in.csv"
    source.write_bytes(written(rows))
    into = work / "pieces"
    into.mkdir()

    count = split(source, into, "csv", per_piece=per_piece, bytes_per_piece=0,
                  header_records=header)

    pieces = [(into / f"{n:016x}").read_bytes() for n in range(count)]
    assert sorted(p.name for p in into.iterdir()) == [f"{n:016x}" for n in range(count)]
    head = written(rows[:header])
    body = rows[header:]
    assert count == -(-len(body) // per_piece)
    parsed = []
    for piece in pieces:
        assert piece.startswith(head)
        piece_rows = list(csv.reader(io.StringIO(piece[len(head):].decode())))
        assert 1 <= len(piece_rows) <= per_piece
        parsed.extend(piece_rows)
    assert head + b"".join(p[len(head):] for p in pieces) == source.read_bytes()
    assert parsed == [next(csv.reader(io.StringIO(written([r]).decode()))) for r in body]


def test_a_file_ending_inside_quotes_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    source.write_bytes(b'id,note\n1,"never closed\n')
    with pytest.raises(InvalidArgument, match="ends inside a quoted field"):
        split(source, tmp_path, "csv", per_piece=1, bytes_per_piece=0)
