"""``tusk model list | inspect`` and ``tusk predict``: the inference service from the shell.

The service is found through TUSK_INFERENCE_URL (default http://127.0.0.1:8080).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from tusk.client.inference import InferenceClient, InferResponse, ModelMetadata, TensorMetadata
from tusk.errors import InvalidArgument
from tusk_cli.common import JsonOption, load_settings, note, run, show, table
from tusk_cli.registry import add, remove, sources

CSV_BATCH_ROWS = 1000

app = typer.Typer(
    help="The models the inference service serves, each following a branch of a repo.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

ModelArg = Annotated[
    str, typer.Argument(metavar="MODEL", help="The model's name (see `tusk model list`).")
]
VersionOption = Annotated[
    str | None,
    typer.Option(
        "--version",
        "-v",
        metavar="COMMIT",
        help="A loaded version (its commit id, or 8+ of its first digits); default: the latest.",
    ),
]


@asynccontextmanager
async def connect_inference() -> AsyncIterator[InferenceClient]:
    settings = load_settings()
    async with InferenceClient(
        settings.inference_url, settings.token, timeout=settings.timeout
    ) as client:
        yield client


@app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List the models: where each comes from, the version it serves, how it runs."""

    async def main() -> None:
        async with connect_inference() as client:
            names = list(dict.fromkeys(entry.name for entry in await client.models()))
            models = [await client.model(name) for name in names]
        if as_json:
            typer.echo(json.dumps([m.model_dump(mode="json") for m in models], indent=2))
            return
        grid = table("MODEL", "SOURCE", "VERSION", "STATE", "EXECUTION", "LOADED", "LAST ERROR")
        for m in models:
            p = m.parameters
            grid.add_row(
                escape(m.name),
                escape(str(p.get("source", "-"))),
                str(p.get("model_commit", "-")),
                str(p.get("state", "-")),
                str(p.get("execution", "-")),
                str(len(m.versions)),
                escape(str(p.get("last_error", ""))),
            )
        show(grid)

    run(main())


@app.command("inspect")
def inspect(model: ModelArg, version: VersionOption = None, as_json: JsonOption = False) -> None:
    """Show a model version: its inputs and outputs, lineage, and how it runs."""

    async def main() -> None:
        async with connect_inference() as client:
            metadata = await client.model(model, version)
        if as_json:
            typer.echo(json.dumps(metadata.model_dump(mode="json"), indent=2))
            return
        grid = table("", "")
        grid.show_header = False
        rows = [("Name", metadata.name), ("Platform", metadata.platform)]
        rows += [("Versions", ", ".join(metadata.versions) or "-")]
        rows += [("Input", _tensor(t)) for t in metadata.inputs]
        rows += [("Output", _tensor(t)) for t in metadata.outputs]
        rows += [(key, str(value)) for key, value in metadata.parameters.items()]
        for key, value in rows:
            grid.add_row(f"[bold]{escape(key)}[/]", escape(value))
        show(grid)

    run(main())


def predict(
    model: ModelArg,
    request_json: Annotated[
        str | None,
        typer.Option(
            "--json",
            metavar="JSON",
            show_default=False,
            help='An OIP request ({"inputs": [...]}) or input name → rows '
            '({"features": [[0.1, 2, …]]}); "-" reads it from stdin.',
        ),
    ] = None,
    csv_file: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            metavar="FILE",
            show_default=False,
            help="Rows to score, one per line, with a header: a single-input model takes every "
            "column in order as its features, others one column per input. '-' is stdin.",
        ),
    ] = None,
    version: VersionOption = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print the service's answers as JSON instead of a table.")
    ] = False,
) -> None:
    """Score rows with a served model, and show which model version and data produced it.

    Examples: `tusk predict credit --json '{"features": [[0.3, -1.2, …]]}'`,
    `tusk predict credit --csv new-customers.csv`
    """
    if (request_json is None) == (csv_file is None):
        raise typer.BadParameter("give exactly one of --json and --csv")

    async def main() -> None:
        async with connect_inference() as client:
            metadata = await client.model(model, version)
            if request_json is not None:
                text = sys.stdin.read() if request_json == "-" else request_json
                requests = [json_request(text, metadata)]
            else:
                assert csv_file is not None
                text = sys.stdin.read() if str(csv_file) == "-" else csv_file.read_text()
                requests = csv_requests(text, metadata)
            answers = [await client.infer(model, r, version) for r in requests]
        if raw:
            for answer in answers:
                typer.echo(answer.model_dump_json(exclude_none=True))
        else:
            _show_answers(answers)
        _note_lineage(answers[-1])

    run(main())


# --- requests ---------------------------------------------------------------------------------


def json_request(text: str, metadata: ModelMetadata) -> dict[str, Any]:
    """An OIP request from ``--json``: one already, or ``{input name: rows}``."""
    try:
        document = json.loads(text)
    except ValueError as e:
        raise InvalidArgument(f"--json is not valid JSON: {e}") from None
    if not isinstance(document, dict):
        raise InvalidArgument('--json must be an object: {"inputs": [...]} or {"name": rows}')
    if isinstance(document.get("inputs"), list):
        return document
    inputs = {t.name: t for t in metadata.inputs}
    tensors = []
    for name, data in document.items():
        spec = inputs.get(name)
        if spec is None:
            raise InvalidArgument(
                f"model {metadata.name!r} has no input {name!r} "
                f"(it takes {', '.join(inputs) or 'nothing yet'})"
            )
        tensors.append(_tensor_of(spec, data))
    return {"inputs": tensors}


def _tensor_of(spec: TensorMetadata, data: Any) -> dict[str, Any]:
    shape = _shape(data)
    if len(shape) == len(spec.shape) - 1:  # one row given without its batch dimension
        data, shape = [data], [1, *shape]
    return {"name": spec.name, "datatype": spec.datatype, "shape": shape, "data": data}


def _shape(data: Any) -> list[int]:
    shape = []
    while isinstance(data, list):
        shape.append(len(data))
        if not data:
            break
        data = data[0]
    return shape


def csv_requests(text: str, metadata: ModelMetadata) -> list[dict[str, Any]]:
    """Requests of up to CSV_BATCH_ROWS rows each from CSV text with a header line."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise InvalidArgument("the CSV file is empty; it needs a header line and rows")
    rows = [row for row in reader if row]
    if not rows:
        raise InvalidArgument("the CSV file has a header but no rows")
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise InvalidArgument(f"CSV line {number} has {len(row)} values, not {len(header)}")
    return [
        _csv_request(header, rows[i : i + CSV_BATCH_ROWS], metadata)
        for i in range(0, len(rows), CSV_BATCH_ROWS)
    ]


def _csv_request(
    header: list[str], rows: list[list[str]], metadata: ModelMetadata
) -> dict[str, Any]:
    if len(metadata.inputs) == 1:
        spec = metadata.inputs[0]
        width = spec.shape[-1] if len(spec.shape) == 2 else -1
        if width not in (-1, len(header)):
            raise InvalidArgument(
                f"the CSV file has {len(header)} columns but input {spec.name!r} of model "
                f"{metadata.name!r} takes {width} features per row"
            )
        data = [
            [_value(spec.datatype, v, column) for v, column in zip(row, header, strict=True)]
            for row in rows
        ]
        return {
            "inputs": [
                {
                    "name": spec.name,
                    "datatype": spec.datatype,
                    "shape": [len(rows), len(header)],
                    "data": data,
                }
            ]
        }
    inputs = {t.name: t for t in metadata.inputs}
    missing = [name for name in inputs if name not in header]
    if missing:
        raise InvalidArgument(f"the CSV file has no column for input(s) {', '.join(missing)}")
    tensors = []
    for name, spec in inputs.items():
        index = header.index(name)
        column = [_value(spec.datatype, row[index], name) for row in rows]
        shape = [len(rows)] + ([1] if len(spec.shape) == 2 else [])
        values: list[Any] = [[v] for v in column] if len(shape) == 2 else column
        tensors.append({"name": name, "datatype": spec.datatype, "shape": shape, "data": values})
    return {"inputs": tensors}


def _value(datatype: str, text: str, column: str) -> Any:
    try:
        if datatype == "BYTES":
            return text
        if datatype == "BOOL":
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return lowered in ("true", "1")
        if datatype.startswith(("INT", "UINT")):
            return int(text)
        return float(text)
    except ValueError:
        raise InvalidArgument(f"column {column!r}: {text!r} is not a {datatype} value") from None


# --- answers ----------------------------------------------------------------------------------


def _tensor(spec: TensorMetadata) -> str:
    return f"{spec.name} {spec.datatype} {spec.shape}"


def _show_answers(answers: Sequence[InferResponse]) -> None:
    outputs = [o.name for o in answers[0].outputs]
    grid = table("ROW", *(name.upper() for name in outputs))
    row = 0
    for answer in answers:
        columns = [_rows(o.data or [], o.shape) for o in answer.outputs]
        for values in zip(*columns, strict=True):
            grid.add_row(str(row), *(escape(_cell(v)) for v in values))
            row += 1
    show(grid)


def _rows(data: list[Any], shape: list[int]) -> list[Any]:
    if not shape:
        return data
    rows = shape[0]
    width = len(data) // rows if rows else 0
    if width == 1:
        return data
    return [data[i * width : (i + 1) * width] for i in range(rows)]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return str(value)


def _note_lineage(answer: InferResponse) -> None:
    p = answer.parameters
    data = str(p.get("data_commits", "")) or "-"
    note(
        f"model [bold]{escape(answer.model_name)}[/] version {escape(str(answer.model_version))} "
        f"({escape(str(p.get('model_repo', '?')))}@{escape(str(p.get('model_branch', '?')))}"
        f":{escape(str(p.get('model_path', '?')))}), global id "
        f"{escape(str(p.get('global_id', '-')))}\ntrained on: {escape(data.replace(',', ', '))}"
    )


# The inference service's model registry (its own client); listed with the model commands.

app.command("add")(add)
app.command("remove")(remove)
app.command("sources")(sources)
