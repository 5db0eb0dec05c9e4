"""The console's own computations, without services: previews, metrics, graphs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tusk.client.models import PipelineInfo, RepoInfo
from tusk_console.domain.graph import dag
from tusk_console.domain.metrics import RateTracker, parse_metrics, quantile
from tusk_console.domain.previews import csv_page, media_type, preview_kind, text_preview


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("size", [1, 7, 4096])
async def test_csv_pages_keep_quoted_commas_and_newlines_whatever_the_chunks(size: int) -> None:
    data = b'id,text\n1,"a, b"\n2,"line one\nline two"\n3,plain\n4,"say ""hi"""\n'
    first = await csv_page(pieces(data, size), page=0, page_size=2)
    assert first.header == ["id", "text"]
    assert first.rows == [["1", "a, b"], ["2", "line one\nline two"]]
    assert first.has_next
    second = await csv_page(pieces(data, size), page=1, page_size=2)
    assert second.rows == [["3", "plain"], ["4", 'say "hi"']]
    assert second.first == 2
    assert not second.has_next


async def test_a_csv_page_stops_reading_once_full() -> None:
    read = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal read
        yield b"n\n"
        while True:
            read += 1
            yield b"1\n" * 100

    page = await csv_page(endless(), page=0, page_size=50)
    assert len(page.rows) == 50
    assert page.has_next
    assert read <= 2


async def test_text_previews_are_cut_at_the_limit_and_binary_is_named() -> None:
    cut = await text_preview(pieces(b"x" * 5000, 1000), 1024)
    assert cut.truncated
    assert len(cut.text) == 1024
    binary = await text_preview(pieces(b"\x00\x01\x02abc", 4), 1024)
    assert binary.binary
    pretty = await text_preview(pieces(b'{"a":[1]}', 3), 1024, pretty_json=True)
    assert pretty.text == '{\n  "a": [\n    1\n  ]\n}'


def test_kinds_and_types_never_serve_html_as_html() -> None:
    assert preview_kind("/x/data.CSV") == "csv"
    assert preview_kind("/m/model.onnx") == "binary"
    assert preview_kind("/a.png") == "image"
    assert preview_kind("/README") == "text"
    assert media_type("/p.html").startswith("text/plain")
    assert media_type("/unknown.bin9") == "application/octet-stream"
    assert media_type("/a.png") == "image/png"


METRICS = """
# TYPE tusk_inference_request_duration_seconds histogram
tusk_inference_request_duration_seconds_bucket{{le="0.001",model="credit"}} {a}
tusk_inference_request_duration_seconds_bucket{{le="0.01",model="credit"}} {b}
tusk_inference_request_duration_seconds_bucket{{le="+Inf",model="credit"}} {b}
tusk_inference_request_duration_seconds_count{{model="credit"}} {b}
tusk_inference_request_duration_seconds_sum{{model="credit"}} {s}
# TYPE tusk_inference_request_errors_total counter
tusk_inference_request_errors_total{{model="credit",status="400"}} 2.0
"""


def test_metrics_give_rate_and_latency_between_two_readings() -> None:
    tracker = RateTracker()
    first = tracker.observe("x", METRICS.format(a=10, b=20, s=0.05), now=100.0)["credit"]
    assert first.rate_per_s is None
    assert first.requests == 20
    assert first.errors == 2
    assert first.mean_ms == pytest.approx(2.5)
    second = tracker.observe("x", METRICS.format(a=60, b=120, s=0.35), now=110.0)["credit"]
    assert second.rate_per_s == pytest.approx(10.0)
    assert second.mean_ms == pytest.approx(3.0)
    # 50 of the 100 new requests took at most 1 ms: the median sits at that bound.
    assert second.p50_ms == pytest.approx(1.0)
    assert 1.0 < (second.p95_ms or 0) <= 10.0
    # A third look soon after still measures from the oldest reading of the last minute.
    third = tracker.observe("x", METRICS.format(a=60, b=120, s=0.35), now=111.0)["credit"]
    assert third.rate_per_s == pytest.approx(100 / 11)
    later = tracker.observe("x", METRICS.format(a=60, b=120, s=0.35), now=200.0)["credit"]
    assert later.rate_per_s is None  # every earlier reading is over a minute old


def test_quantile_of_an_empty_histogram_is_unknown() -> None:
    assert quantile({}, 0.5) is None
    assert parse_metrics("") == {}


def test_the_dag_joins_pipelines_through_their_output_repos() -> None:
    now = datetime.now(UTC)
    repos = [
        RepoInfo(name=n, description="", created_at=now, branches=[], size_bytes=0,
                 commit_count=0)
        for n in ("raw", "preprocess", "train")
    ]

    def pipeline(name: str, inputs: list[str], state: str | None) -> PipelineInfo:
        return PipelineInfo(
            name=name, version=1, state="running", description="", input_repos=inputs,
            output_repo=name, output_branch="master", spec={}, created_at=now, updated_at=now,
            last_job_state=state,
        )

    graph = dag(repos, [pipeline("preprocess", ["raw"], "success"),
                        pipeline("train", ["preprocess"], "running")])
    assert {n.id: n.state for n in graph.nodes} == {
        "repo:raw": None, "pipeline:preprocess": "success", "pipeline:train": "running",
    }
    assert {(e.source, e.target) for e in graph.edges} == {
        ("repo:raw", "pipeline:preprocess"), ("pipeline:preprocess", "pipeline:train"),
    }
