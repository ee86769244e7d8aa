"""benchmarks/crf_scaling.py (goal 5's table): runs, alternates the two passes, and checks
that they give the same labels."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import crf_goals  # noqa: E402
import crf_scaling  # noqa: E402
import make_crf_reference as ref  # noqa: E402

from tseg.runtime.crf import split  # noqa: E402

TINY = [crf_goals.Goal(1, ref.Case("48x40, 2 it", "photo", 48, 40, 5, 2), {2: 1.0})]


def test_the_scaling_table_times_both_passes_on_each_thread_count(monkeypatch, capsys):
    monkeypatch.setattr(crf_goals, "GOALS", TINY)
    monkeypatch.setattr(crf_scaling, "_thread_counts", lambda: [1, 16])
    used = []
    kernel = split.splat_pieces
    monkeypatch.setattr(split, "splat_pieces", lambda *a: (used.append(1), kernel(*a))[1])
    crf_scaling.print_scaling(2)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 48x40")]
    assert [row.split("|")[2].strip() for row in rows] == ["1", "16"]
    assert rows[0].split("|")[4].strip() == "1.00x"
    assert used  # 16 threads ran the two-phase pass


def test_different_labels_from_the_two_passes_stop_the_table(monkeypatch):
    monkeypatch.setattr(crf_goals, "GOALS", TINY)
    monkeypatch.setattr(crf_scaling, "_thread_counts", lambda: [16])
    monkeypatch.setattr(split, "splat_pieces", lambda *a: None)  # the second phase splats nothing
    with pytest.raises(SystemExit, match="differ"):
        crf_scaling.print_scaling(1)


def test_thread_counts_double_up_to_every_core(monkeypatch):
    from tseg.runtime.crf import parallel

    monkeypatch.setattr(parallel, "available_threads", lambda: 12)
    assert crf_scaling._thread_counts() == [1, 2, 4, 8, 12]
    monkeypatch.setattr(parallel, "available_threads", lambda: 1)
    assert crf_scaling._thread_counts() == [1]
