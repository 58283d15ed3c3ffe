"""Experiment records (nlbook.records): the format, the verdict rule, atomic writes, loud failures, staleness."""

from __future__ import annotations

import json
import os

import pytest

from nlbook import records
from nlbook.records import RecordError, RecordNotFoundError, load_record, stale_arms, verdict, write_record


def make_record(accs: dict[str, list[float]] | None = None, epochs: int = 3) -> dict:
    """A small valid record: one arm per entry of ``accs`` (final test accuracy per seed)."""
    accs = accs or {"resnet": [0.9, 0.92, 0.91], "vit": [0.5, 0.55, 0.52]}
    arms = []
    for name, values in accs.items():
        runs = []
        for seed, acc in enumerate(values):
            history = [
                {"epoch": e + 1, "train_loss": 1.0 / (e + 1), "train_acc": acc, "test_loss": 1.0, "test_acc": acc}
                | {"seconds": 0.5}
                for e in range(epochs)
            ]
            runs.append(
                {"seed": seed, "epochs_run": epochs, "converged": True, "final_test_acc": acc, "best_test_acc": acc}
                | {"train_seconds": 1.5, "history": history}
            )
        arms.append(
            {
                "name": name,
                "label": name.upper(),
                "x": None,
                "model_spec": {"builder": name, "width": 16},
                "train_config": {"epochs": epochs, "lr": 0.1},
                "params": 1000,
                "runs": runs,
            }
        )
    return {
        "format": records.FORMAT,
        "experiment": "unit",
        "chapter": 0,
        "question": "does the format round-trip?",
        "provenance": records.provenance(command=["tests/test_records.py"]),
        "dataset": {"name": "digits", "train_size": 10, "test_size": 5},
        "convergence": {"criterion": "fixed", "max_epochs": epochs, "patience": 1, "min_delta": 0.0},
        "wall_s": 1.0,
        "arms": arms,
    }


# ----------------------------------------------------------------------------------------------- verdict


def test_verdict_identical_seeds_are_within_the_spread():
    v = verdict([0.9, 0.9, 0.9], [0.9, 0.9, 0.9])
    assert v.word == "within the spread" and v.difference == 0 and v.spread == 0


def test_verdict_clear_separation_is_better_and_worse():
    a, b = [0.95, 0.96, 0.94], [0.50, 0.52, 0.51]
    assert verdict(a, b).word == "better"
    assert verdict(b, a).word == "worse"
    v = verdict(a, b)
    assert v.difference == pytest.approx(0.95 - 0.51)
    assert v.spread == pytest.approx(2 * ((0.01**2) / 3 + (0.01**2) / 3) ** 0.5)


def test_verdict_overlapping_seeds_are_within_the_spread():
    # means differ by 0.02, but each arm scatters by ~0.05: the difference is smaller than 2 standard errors
    v = verdict([0.80, 0.90, 0.85], [0.78, 0.88, 0.83])
    assert v.word == "within the spread"
    assert abs(v.difference) < v.spread


def test_verdict_uses_two_standard_errors_at_the_boundary():
    # difference 0.1; sa = sb = 0.1 with n = 3 → 2·sqrt(2·0.01/3) ≈ 0.163 > 0.1; with n = 12, ≈ 0.082 < 0.1
    few_a, few_b = [0.6, 0.7, 0.8], [0.5, 0.6, 0.7]
    assert verdict(few_a, few_b).word == "within the spread"
    assert verdict(few_a * 4, few_b * 4).word == "better"


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [([0.9], [0.8, 0.7], "at least 2 seeds"), ([0.9, float("nan")], [0.8, 0.7], "finite"), ("0.9", [0.8, 0.7], "list")],
)
def test_verdict_rejects_bad_input(a, b, message):
    with pytest.raises((ValueError, TypeError), match=message):
        verdict(a, b)


# ----------------------------------------------------------------------------------------------- files


def test_write_then_load_round_trips(tmp_path):
    rec = make_record()
    path = write_record(rec, tmp_path / "unit.json")
    loaded = load_record("unit", folder=tmp_path)
    assert loaded["arms"][0]["runs"][1]["final_test_acc"] == 0.92
    assert loaded["provenance"]["machine"]["threads"] >= 1
    assert path == records.record_path("unit", tmp_path)
    assert load_record(path)["experiment"] == "unit"  # a path works too


def test_write_is_atomic(tmp_path, monkeypatch):
    """A crash while writing leaves the old record intact and no temporary file behind."""
    path = write_record(make_record(), tmp_path / "unit.json")
    before = path.read_text()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(records.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_record(make_record({"resnet": [0.1, 0.2, 0.3]}), path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["unit.json"]


def test_write_refuses_an_invalid_record(tmp_path):
    rec = make_record()
    rec["arms"][0]["runs"][0]["final_test_acc"] = 97.0  # a percentage, not a fraction
    with pytest.raises(RecordError, match=r"final_test_acc.*\[0, 1\]"):
        write_record(rec, tmp_path / "unit.json")
    assert not (tmp_path / "unit.json").exists()


def test_write_turns_nan_into_null(tmp_path):
    rec = make_record()
    rec["arms"][0]["runs"][0]["history"][0]["train_loss"] = float("nan")  # a diverged step is a result, not a crash
    write_record(rec, tmp_path / "unit.json")
    assert load_record("unit", tmp_path)["arms"][0]["runs"][0]["history"][0]["train_loss"] is None


def test_missing_record_is_a_clear_error_not_an_empty_result(tmp_path):
    write_record(make_record(), tmp_path / "other.json")
    with pytest.raises(RecordNotFoundError, match=r"no record at .*absent\.json.*other"):
        load_record("absent", folder=tmp_path)
    with pytest.raises(FileNotFoundError):  # also an ordinary FileNotFoundError for callers that catch that
        load_record("absent", folder=tmp_path)


def test_truncated_record_is_a_clear_error(tmp_path):
    text = json.dumps(make_record())
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    with pytest.raises(RecordError, match="truncated"):
        load_record("cut", folder=tmp_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.update(format="nlbook-record/0"), "format"),
        (lambda r: r.pop("provenance"), "provenance"),
        (lambda r: r["arms"][0]["runs"][0]["history"].pop(), "one entry per epoch"),
        (lambda r: r["arms"][0].update(runs=[]), "non-empty list of runs"),
        (lambda r: r["arms"][1].update(name="resnet"), "appears twice"),
        (lambda r: r["arms"][0]["runs"][1].update(seed=0), "repeated seeds"),
    ],
)
def test_wrong_format_is_a_clear_error(tmp_path, edit, message):
    rec = make_record()
    edit(rec)
    (tmp_path / "bad.json").write_text(json.dumps(rec))
    with pytest.raises(RecordError, match=message):
        load_record("bad", folder=tmp_path)


def test_not_an_object_is_a_clear_error(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    with pytest.raises(RecordError, match="expected a JSON object"):
        load_record("list", folder=tmp_path)


def test_record_name_is_checked():
    with pytest.raises(ValueError, match="experiment must be a record name"):
        records.record_path("../etc/passwd")


def test_gpu_records_come_first(tmp_path):
    for name in ("ch3_nonlocal", "ch3_nonlocal__cifar10_cuda"):
        write_record(make_record(), tmp_path / f"{name}.json")
    paths = records.record_paths("ch3_nonlocal", tmp_path)
    assert [p.name for p in paths] == ["ch3_nonlocal__cifar10_cuda.json", "ch3_nonlocal.json"]


def test_provenance_records_machine_and_command():
    p = records.provenance(command=["benchmarks/converge.py", "ch3"])
    assert p["command"] == "python benchmarks/converge.py ch3"
    assert p["machine"]["device"] == "cpu" and p["machine"]["threads"] >= 1 and p["machine"]["cpu"]
    assert p["torch"] and p["python"].count(".") == 2
    assert p["git_commit"] is None or len(p["git_commit"]) == 40


# ----------------------------------------------------------------------------------------------- summaries


def test_summarize_and_table():
    rec = make_record({"resnet": [0.9, 0.92, 0.94], "vit": [0.5, 0.6, 0.7]})
    s = {a.name: a for a in records.summarize(rec)}
    assert s["resnet"].final_test_acc.mean == pytest.approx(0.92)
    assert s["resnet"].final_test_acc.std == pytest.approx(0.02)
    assert (s["vit"].final_test_acc.n, s["vit"].final_test_acc.min, s["vit"].final_test_acc.max) == (3, 0.5, 0.7)
    assert s["vit"].epochs.mean == 3 and s["vit"].converged == 3
    table = records.results_table(rec)
    assert "92.0 ± 2.0 %" in table and "60.0 ± 10.0 %" in table and "VIT" in table
    assert records.arm_values(rec, "vit") == [0.5, 0.6, 0.7]
    with pytest.raises(KeyError, match="no arm 'cnn'"):
        records.find_arm(rec, "cnn")


# ----------------------------------------------------------------------------------------------- staleness


def planned_from(rec: dict) -> list[dict]:
    return [{k: arm[k] for k in ("name", "label", "x", "model_spec", "train_config")} for arm in rec["arms"]]


def test_stale_arms_empty_when_the_plan_matches():
    rec = make_record()
    assert stale_arms(rec, planned_from(rec)) == []


def test_stale_arms_reports_every_kind_of_difference():
    rec = make_record()
    planned = planned_from(rec)
    planned[0]["train_config"] = {"epochs": 3, "lr": 0.2}  # recipe changed
    planned[1]["model_spec"] = {"builder": "vit", "width": 16, "depth": 4}  # new model argument
    planned.append({"name": "coatnet", "x": None, "model_spec": {}, "train_config": {}})  # new arm
    problems = stale_arms(rec, planned)
    assert "arm 'resnet' train_config.lr: recorded 0.1, planned 0.2" in problems
    assert "arm 'vit' model_spec.depth: planned 4, not in the record" in problems
    assert "arm 'coatnet' (x=None) is planned but not in the record" in problems
    assert len(problems) == 3
    assert stale_arms(rec, planned[:1]) == [
        "arm 'resnet' train_config.lr: recorded 0.1, planned 0.2",
        "arm 'vit' (x=None) is in the record but no longer planned",
    ]


def test_stale_arms_compares_json_types():
    """Tuples in today's plan equal the lists a JSON record holds: no false alarm."""
    rec = make_record()
    rec["arms"][0]["model_spec"]["widths"] = [16, 32]
    planned = planned_from(rec)
    planned[0]["model_spec"] = dict(planned[0]["model_spec"], widths=(16, 32))
    assert stale_arms(json.loads(json.dumps(rec)), planned) == []


def test_records_module_is_a_low_layer():
    """records.py imports only the standard library and torch: every other layer may use it."""
    import ast

    tree = ast.parse(open(records.__file__).read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported - ({"torch", "__future__"} | set(os.sys.stdlib_module_names)), imported
