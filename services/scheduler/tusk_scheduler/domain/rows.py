"""The rows of one file of an SQL egress, read as its bytes arrive: CSV or JSON lines, each row
as the texts PostgreSQL's ``COPY`` parses into the columns' types (None for NULL).

CSV follows Pachyderm: without ``columns`` a line holds one value per column of the table, in
the table's order, and has no header; with ``columns`` the file begins with a header naming
them (in any order). An empty value is NULL. JSON: one object per line; its keys are columns
(``columns``, if given, picks the fields read; a column it leaves out is NULL).
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Sequence
from typing import Literal

Row = list[str | None]


class RowError(Exception):
    """A file's content cannot be rows of its table; the message says where and why."""


class RowReader:
    """Feed it a file's bytes piece by piece; it hands back the complete rows so far, in
    the order of :attr:`columns` (known once the header, if any, has been read)."""

    def __init__(
        self,
        kind: Literal["CSV", "JSON"],
        table: str,
        table_columns: Sequence[str],
        picked: Sequence[str] = (),
    ) -> None:
        unknown = [c for c in picked if c not in table_columns]
        if unknown:
            raise RowError(
                f"egress.sql_database.file_format.columns names {', '.join(map(repr, unknown))}, "
                f"not a column of table {table} (it has {', '.join(table_columns)})"
            )
        self.kind = kind
        self.table = table
        self.table_columns = tuple(table_columns)
        self.picked = tuple(picked)
        # CSV with columns: set by the header line. Otherwise known now.
        self.columns: tuple[str, ...] | None = (
            None if kind == "CSV" and picked else (self.picked or self.table_columns)
        )
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._text = ""  # undecoded tail: the start of a line not yet complete
        self._record: list[str] = []  # lines of a CSV record whose quotes are still open
        self._record_line = 0  # where that record began
        self._line = 0  # lines read so far
        self.lines: list[int] = []  # the line each row of the last feed() or end() begins on

    def feed(self, data: bytes) -> list[Row]:
        try:
            self._text += self._decoder.decode(data)
        except UnicodeDecodeError as e:
            line = self._line + 1 + self._text.count("\n") + data[: e.start].count(b"\n")
            raise RowError(f"line {line}: not UTF-8 text ({e.reason})") from None
        *lines, self._text = self._text.split("\n")
        return self._lines(lines)

    def end(self) -> list[Row]:
        try:
            self._text += self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as e:
            line = self._line + 1 + self._text.count("\n")
            raise RowError(f"line {line}: not UTF-8 text ({e.reason})") from None
        lines, self._text = ([self._text] if self._text else []), ""
        rows = self._lines(lines)
        if self._record:
            raise RowError(f"line {self._record_line}: a quoted value is never closed")
        return rows

    def _lines(self, lines: list[str]) -> list[Row]:
        self.lines = []
        if self.kind == "CSV":
            return self._csv(lines)
        rows: list[Row] = []
        for line in lines:
            self._line += 1
            row = self._json(line)
            if row is not None:
                rows.append(row)
                self.lines.append(self._line)
        return rows

    # --- CSV --------------------------------------------------------------------------------

    def _csv(self, lines: list[str]) -> list[Row]:
        """Lines joined into records (a quoted value may span lines), then parsed together:
        one ``csv.reader`` per piece, not per line."""
        starts: list[int] = []
        records: list[str] = []
        for line in lines:
            self._line += 1
            if not self._record:
                if not line.count('"') % 2:  # the common case: a record of its own
                    if line.strip():
                        starts.append(self._line)
                        records.append(line.removesuffix("\r"))
                    continue
                self._record_line = self._line
            self._record.append(line)
            text = "\n".join(self._record)
            if text.count('"') % 2:  # inside a quoted value: the record goes on
                continue
            self._record = []
            starts.append(self._record_line)
            records.append(text.removesuffix("\r"))
        reader = csv.reader(records, strict=True)
        rows: list[Row] = []
        try:
            for values in reader:
                start = starts[reader.line_num - 1]
                row = self._csv_values(values, start)
                if row is not None:
                    rows.append(row)
                    self.lines.append(start)
        except (csv.Error, ValueError) as e:
            raise RowError(f"line {starts[reader.line_num - 1]}: not CSV: {e}") from None
        return rows

    def _csv_values(self, values: list[str], line: int) -> Row | None:
        if self.columns is None:
            self._header(values, line)
            return None
        if len(values) != len(self.columns):
            raise RowError(f"line {line}: {len(values)} values, but {self._expected()}")
        return [v if v != "" else None for v in values]

    def _header(self, names: list[str], line: int) -> None:
        if sorted(names) != sorted(self.picked):
            raise RowError(
                f"line {line}: the header names {', '.join(names)}; "
                f"egress.sql_database.file_format.columns expects {', '.join(self.picked)}"
            )
        self.columns = tuple(names)

    def _expected(self) -> str:
        assert self.columns is not None
        if self.picked:
            return f"the header names {len(self.columns)} columns"
        return (
            f"table {self.table} has {len(self.columns)} columns ({', '.join(self.columns)}); "
            "without file_format.columns each line holds them all, in the table's order"
        )

    # --- JSON -------------------------------------------------------------------------------

    def _json(self, line: str) -> Row | None:
        if not line.strip():
            return None
        try:
            value = json.loads(line)
        except ValueError as e:
            raise RowError(f"line {self._line}: not JSON: {e}") from None
        if not isinstance(value, dict):
            raise RowError(f"line {self._line}: a JSON object is expected, not {line[:40]!r}")
        assert self.columns is not None
        if not self.picked:
            unknown = [k for k in value if k not in self.columns]
            if unknown:
                raise RowError(
                    f"line {self._line}: {', '.join(map(repr, unknown))} is not a column of "
                    f"table {self.table} (it has {', '.join(self.columns)})"
                )
        return [_text(value.get(c)) for c in self.columns]


def _text(value: object) -> str | None:
    """A JSON value as the text PostgreSQL parses: objects and arrays as JSON (json and jsonb
    columns), booleans as true/false."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value)


def copy_csv(rows: list[Row]) -> bytes:
    """Rows in the CSV that ``COPY … (FORMAT csv)`` reads: every value quoted, so that only an
    unquoted empty value is NULL."""
    lines = []
    for row in rows:
        fields = ("" if v is None else '"' + v.replace('"', '""') + '"' for v in row)
        lines.append(",".join(fields) + "\n")
    return "".join(lines).encode()
