"""`tusk pipeline draw`'s layout: every name after what it reads."""

from __future__ import annotations

from tusk_cli.draw import layer, render


def test_layers_put_each_pipeline_after_what_it_reads() -> None:
    reads = {"montage": ["edges", "images"], "edges": ["images"], "train": ["raw", "weekly"]}
    layers = layer(reads)
    assert layers == [["images", "raw", "weekly"], ["edges", "train"], ["montage"]]
    assert render(layers, reads) == [
        "images",
        "raw",
        "weekly",
        "edges   ◀── images",
        "train   ◀── raw, weekly",
        "montage ◀── edges, images",
    ]


def test_no_pipelines_draw_nothing() -> None:
    assert layer({}) == []
    assert render([], {}) == []
