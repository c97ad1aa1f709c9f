"""Hypothesis fuzzing of CSV rows (#4): the reader reports every bad row with its line
number, keeps every good one, never crashes and never drops a row silently."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from ppg_mi.data.kaggle import read_csv

N = 6  # sample columns

FINITE = st.floats(allow_nan=False, allow_infinity=False, width=32)


@st.composite
def row(draw: st.DrawFn) -> tuple[list[str], str | None]:
    """One CSV row and the reason the reader must give for it (None: a good row)."""
    values = [repr(float(v)) for v in draw(st.lists(FINITE, min_size=N, max_size=N))]
    label = draw(st.sampled_from(["Normal", "MI"]))
    defect = draw(st.sampled_from([None, None, "wrong_length", "non_numeric", "non_finite", "unknown_label",
                                   "empty_row"]))
    if defect == "wrong_length":
        if draw(st.booleans()):
            values = values[: draw(st.integers(0, N - 1))] or ["1.0"] * (N + 1)
        else:
            values = values + ["0.5"]
    elif defect == "non_numeric":
        values[draw(st.integers(0, N - 1))] = draw(st.text("abcxyz-_;", min_size=1, max_size=5))
    elif defect == "non_finite":
        values[draw(st.integers(0, N - 1))] = draw(st.sampled_from(["nan", "inf", "-inf", "NaN"]))
    elif defect == "unknown_label":
        label = draw(st.sampled_from(["", "normal", "MI?", "Abnormal", "1"]))
    elif defect == "empty_row":
        return [""] * (N + 1), defect
    return values + [label], defect


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(row(), min_size=1, max_size=25))
def test_every_row_is_kept_or_reported_with_its_line(tmp_path: Path, rows: list) -> None:  # noqa: ANN001
    path = tmp_path / "fuzz.csv"
    header = [str(i) for i in range(N)] + ["Label"]
    lines = [",".join(header)] + [",".join(fields) for fields, _ in rows]
    path.write_text("\n".join(lines) + "\n")

    dataset = read_csv(path, N)

    expected_bad = {i + 2: defect for i, (_, defect) in enumerate(rows) if defect}  # line 1 is the header
    assert {e.line: e.reason for e in dataset.errors} == expected_bad
    assert all(str(e).startswith(f"line {e.line}: ") for e in dataset.errors)
    assert len(dataset) + len(dataset.errors) == len(rows), "no row dropped silently"
    good = [fields for fields, defect in rows if defect is None]
    assert dataset.record_ids == [f"fuzz-{i}" for i, (_, d) in enumerate(rows) if d is None]
    for got, fields in zip(dataset.samples, good):
        assert all(math.isclose(float(g), float(f), rel_tol=1e-6, abs_tol=1e-30) for g, f in zip(got, fields[:N]))
    assert dataset.labels == [fields[N] for fields in good]
