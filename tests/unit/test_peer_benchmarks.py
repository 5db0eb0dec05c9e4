"""The peer benchmarks' arithmetic: which way each ratio points, and when a peer's virtualenv
counts as installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest import bench_peers_data as data
from loadtest import bench_peers_inference as inference
from loadtest.peers import install


def test_inference_ratio_is_tusk_over_the_best_peer_in_the_rows_direction() -> None:
    faster = inference.Row("credit: max req/s", "req/s", {"tusk": 900, "kserve": 300,
                                                          "mlserver": 450})
    assert faster.best_peer() == ("mlserver", 450)
    assert faster.ratio() == pytest.approx(2.0)
    assert faster.tusk_ahead() is True

    slower = inference.Row("credit: p99", "ms", {"tusk": 30, "kserve": 10, "mlserver": None})
    assert slower.best_peer() == ("kserve", 10)  # lower is better for ms; a missing peer is no peer
    assert slower.ratio() == pytest.approx(3.0)
    assert slower.tusk_ahead() is False

    alone = inference.Row("credit_b: p99", "ms", {"tusk": 5, "kserve": None, "mlserver": None})
    assert alone.ratio() is None
    assert alone.tusk_ahead() is None


def test_data_ratios_read_above_one_when_tusk_is_ahead() -> None:
    files = data.Row("ingest", "files/s", False, {"tusk services": 300.0, "dvc": 100.0})
    assert files.ratio("tusk services", files.values["dvc"]) == pytest.approx(3.0)
    millis = data.Row("list", "ms", True, {"tusk services": 400.0, "dvc": 100.0}, lakefs=200.0)
    assert millis.ratio("tusk services", millis.values["dvc"]) == pytest.approx(0.25)
    assert millis.ratio("tusk services", millis.lakefs) == pytest.approx(0.5)
    assert millis.ratio("tusk embedded", millis.lakefs) is None


def test_a_peer_is_installed_only_while_its_pins_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUSK_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(install.PEERS, "dvc", ["dvc[s3]==1.0"])
    assert not install.installed("dvc")
    venv = install.venv_dir("dvc")
    venv.mkdir(parents=True)
    (venv / f".installed-{install._stamp('dvc')}").touch()
    assert install.installed("dvc")
    assert install.ensure("dvc") == venv / "bin" / "python"  # no rebuild while stamped
    monkeypatch.setitem(install.PEERS, "dvc", ["dvc[s3]==2.0"])
    assert not install.installed("dvc")


def test_an_unknown_peer_is_named() -> None:
    with pytest.raises(SystemExit, match="unknown peer 'lakefs'"):
        install.ensure("lakefs")
