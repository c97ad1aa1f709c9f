"""training/compare.py: conditions, --data, the stated rule, the generated section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ppg_mi.data import SyntheticConfig, generate, write_csv
from ppg_mi.signal import BandPass
from training.compare import BEGIN, CONDITIONS, END, MIN_SPEEDUP, SEED_KIND, choose, main, summarise, throughput

SAMPLES = 256  # short recordings: these tests are about the comparison's bookkeeping, not accuracy


def test_compare_runs_the_named_conditions_and_keeps_the_prose(tmp_path: Path) -> None:
    doc = tmp_path / "model.md"
    doc.write_text(f"# The model\n\nprose before\n\n{BEGIN}\nstale\n{END}\n\nprose after\n")
    assert main(["--out", str(doc), "--records", "24", "--samples", str(SAMPLES), "--repeats", "1",
                 "--conditions", "base,fs-250", "--kinds", "minirocket-100-ds4,minirocket-200-ds8-sel50",
                 "--json", str(tmp_path / "r.json")]) == 0
    text = doc.read_text()
    assert "prose before" in text and "prose after" in text and "stale" not in text
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "| base | `minirocket-100-ds4` |" in text and "| fs-250 | `minirocket-200-ds8-sel50` |" in text
    assert "**Rule:**" in text
    result = json.loads((tmp_path / "r.json").read_text())
    assert [(r["condition"], r["kind"]) for r in result["rows"]] == [
        ("base", "minirocket-100-ds4"), ("base", "minirocket-200-ds8-sel50"),
        ("fs-250", "minirocket-100-ds4"), ("fs-250", "minirocket-200-ds8-sel50")]
    # each condition is preprocessed at the rate its recordings carry
    assert [c["sampling_rate_hz"] for c in result["conditions"]] == [125.0, 250.0]
    assert all(r["records_per_s"] > 0 and 0 <= r["macro_f1"] <= 1 for r in result["rows"])
    # without the seed among the candidates the speed gate cannot apply, and the section says so
    assert result["default"]["by_rule"] is False and "could not be applied" in text


def test_compare_on_a_labelled_csv_assumes_the_given_rate(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = generate(SyntheticConfig(records=30, samples=SAMPLES, sampling_rate_hz=100.0, difficulty=0.2, seed=2))
    write_csv(data, tmp_path / "lab.csv")
    assert main(["--out", str(tmp_path / "m.md"), "--data", str(tmp_path / "lab.csv"), "--rate", "100",
                 "--repeats", "1", "--kinds", "minirocket-100-ds4", "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert [c["name"] for c in result["conditions"]] == ["lab"]
    assert result["conditions"][0]["sampling_rate_hz"] == 100.0
    assert "sampling rate assumed 100 Hz" in result["conditions"][0]["what"]
    assert "assuming 100 Hz" in capsys.readouterr().err


def test_unknown_conditions_and_kinds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "m.md"), "--conditions", "base,nope"])
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "m.md"), "--kinds", "minirocket-0-ds4"])


def test_every_condition_differs_from_the_base_data() -> None:
    base = generate(CONDITIONS[0].synthetic(6, SAMPLES, 0))
    for cond in CONDITIONS[1:]:
        other = generate(cond.synthetic(6, SAMPLES, 0))
        assert not np.array_equal(base.samples, other.samples), cond.name


def _row(condition: str, kind: str, f1: float, per_s: float) -> dict:
    return {"condition": condition, "kind": kind, "macro_f1": f1, "sensitivity_mi": f1, "specificity": f1,
            "roc_auc": f1, "records_per_s": per_s}


def test_the_rule_takes_the_best_worst_case_among_the_fast_enough() -> None:
    rows = [_row(c, SEED_KIND, 0.8, 100.0) for c in ("a", "b")]
    rows += [_row("a", "slow-but-good", 0.99, 200.0), _row("b", "slow-but-good", 0.99, 200.0)]
    rows += [_row("a", "fast-uneven", 0.99, 400.0), _row("b", "fast-uneven", 0.70, 400.0)]
    rows += [_row("a", "fast-steady", 0.90, 300.0), _row("b", "fast-steady", 0.88, 300.0)]
    kinds = (SEED_KIND, "slow-but-good", "fast-uneven", "fast-steady")
    summary = summarise(rows, kinds)
    speed = {s["kind"]: s["speedup_vs_seed"] for s in summary}
    assert speed == {SEED_KIND: 1.0, "slow-but-good": 2.0, "fast-uneven": 4.0, "fast-steady": 3.0}
    assert MIN_SPEEDUP == 3.0
    assert choose(summary) == {"kind": "fast-steady", "by_rule": True, "eligible": ["fast-uneven", "fast-steady"]}


def test_near_equal_worst_cases_go_to_the_higher_mean_then_the_faster() -> None:
    rows = [_row("a", SEED_KIND, 0.8, 100.0), _row("b", SEED_KIND, 0.8, 100.0)]
    rows += [_row("a", "x", 0.900, 500.0), _row("b", "x", 0.901, 500.0)]
    rows += [_row("a", "y", 0.899, 400.0), _row("b", "y", 0.95, 400.0)]
    assert choose(summarise(rows, (SEED_KIND, "x", "y")))["kind"] == "y"
    rows = [r for r in rows if r["kind"] != "y"] + [_row("a", "z", 0.900, 900.0), _row("b", "z", 0.901, 900.0)]
    assert choose(summarise(rows, (SEED_KIND, "x", "z")))["kind"] == "z"


def test_throughput_includes_preprocessing_of_raw_recordings() -> None:
    seen: list[tuple[int, ...]] = []

    class Recorder:
        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            seen.append(x.shape)
            # the filter's output: z-scored rows, not the raw sensor counts
            assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1.0) < 1e-2
            return np.zeros((len(x), 2))

    raw = generate(SyntheticConfig(records=10, samples=SAMPLES, seed=1)).samples
    assert throughput(Recorder(), raw, BandPass(), batch=4, records=10, repeats=1) > 0
    assert seen[1:] == [(4, 1, SAMPLES), (4, 1, SAMPLES), (2, 1, SAMPLES)]


def test_candidates_take_turns_when_their_speed_is_measured() -> None:
    from training.compare import throughputs

    order: list[str] = []

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            order.append(self.name)
            return np.zeros((len(x), 2))

    raw = generate(SyntheticConfig(records=4, samples=SAMPLES, seed=1)).samples
    speeds = throughputs([Named("a"), Named("b")], raw, BandPass(), batch=4, records=4, repeats=2)
    assert len(speeds) == 2 and all(s > 0 for s in speeds)
    assert order == ["a", "b", "a", "b", "a", "b"]  # warm-ups, then pass by pass: load falls on both alike


def test_compare_with_an_operating_point_reports_calibration_and_the_threshold_decisions(tmp_path: Path) -> None:
    doc = tmp_path / "model.md"
    assert main(["--out", str(doc), "--records", "40", "--samples", str(SAMPLES), "--repeats", "1",
                 "--conditions", "easier", "--kinds", "minirocket-100-ds4", "--target-sensitivity", "0.9",
                 "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    (row,) = result["rows"]
    assert 0.0 <= row["brier"] <= 1.0 and 0.0 <= row["calibration_error"] <= 1.0
    assert result["config"]["target_sensitivity"] == 0.9
    text = doc.read_text()
    assert "wrapped in `OperatingPoint`" in text and "| mean Brier | mean calibration error |" in text


def test_the_speed_gate_holds_in_every_condition_not_only_in_the_median() -> None:
    rows = [_row(c, SEED_KIND, 0.8, 100.0) for c in ("a", "b", "c")]
    # 4x the seed in two conditions of three (median 4x), 2x in the third: not fast enough
    rows += [_row("a", "fast-mostly", 0.95, 400.0), _row("b", "fast-mostly", 0.95, 400.0),
             _row("c", "fast-mostly", 0.95, 200.0)]
    rows += [_row(c, "fast-always", 0.90, 300.0) for c in ("a", "b", "c")]
    summary = summarise(rows, (SEED_KIND, "fast-mostly", "fast-always"))
    mostly = next(s for s in summary if s["kind"] == "fast-mostly")
    assert mostly["speedup_vs_seed"] == 4.0 and mostly["worst_speedup_vs_seed"] == 2.0
    assert choose(summary) == {"kind": "fast-always", "by_rule": True, "eligible": ["fast-always"]}


def test_means_within_the_noise_go_to_the_faster() -> None:
    rows = [_row(c, SEED_KIND, 0.8, 100.0) for c in ("a", "b")]
    rows += [_row("a", "slower", 0.800, 400.0), _row("b", "slower", 0.912, 400.0)]   # mean 0.856
    rows += [_row("a", "faster", 0.800, 500.0), _row("b", "faster", 0.910, 500.0)]   # mean 0.855
    assert choose(summarise(rows, (SEED_KIND, "slower", "faster")))["kind"] == "faster"
