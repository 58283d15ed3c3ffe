"""Experiment records (nlbook.records): the format, the verdict rule, atomic writes, loud failures, staleness."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch

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
    assert records.compare_arms(rec, "resnet", "vit").word == "better"
    assert records.compare_arms(rec, "vit", "resnet", metric="best_test_acc").word == "worse"
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


def test_a_doubled_budget_is_compared_at_its_base_epochs():
    rec = make_record()
    arm = rec["arms"][0]
    planned = planned_from(rec)
    planned[0]["budget"] = {
        "base_epochs": arm["train_config"]["epochs"],
        "max_epochs": 8 * arm["train_config"]["epochs"],
    }
    # the runs shown trained twice the base: the plan (base, cap) still matches
    arm["budget"] = dict(planned[0]["budget"], epochs=2 * arm["train_config"]["epochs"], tried=[])
    arm["train_config"] = dict(arm["train_config"], epochs=2 * arm["train_config"]["epochs"])
    assert stale_arms(rec, planned) == []
    planned[0]["budget"] = dict(planned[0]["budget"], max_epochs=4)  # the budget rule changed
    assert stale_arms(rec, planned) == [
        f"arm 'resnet' budget.max_epochs: recorded {arm['budget']['max_epochs']}, planned 4"
    ]


# ----------------------------------------------------------------------------------------------- convergence


def test_converged_compares_the_last_quarter_with_the_best_before_it():
    assert records.converged([0.5, 0.8, 0.9, 0.9])  # last quarter (one epoch) adds nothing
    assert not records.converged([0.5, 0.8, 0.85, 0.9])  # still improving by 0.05
    assert records.converged([0.5, 0.8, 0.9, 0.904])  # less than min_delta (0.005)
    assert not records.converged([0.9])  # nothing before the last quarter to compare with
    eight = [0.1, 0.5, 0.7, 0.8, 0.9, 0.9, 0.9, 0.91]  # 8 epochs: the last quarter is two epochs
    assert not records.converged(eight) and records.converged(eight, min_delta=0.02)


def test_train_to_convergence_doubles_until_every_seed_converges():
    calls = []

    def train_seeds(epochs):
        calls.append(epochs)
        return [{"converged": epochs >= 40 or seed == 0, "final_test_acc": epochs / 100} for seed in range(3)]

    runs, budget = records.train_to_convergence(train_seeds, 10, max_doublings=3)
    assert calls == [10, 20, 40] and budget["epochs"] == 40 and budget["max_epochs"] == 80
    assert [(t["epochs"], t["converged"]) for t in budget["tried"]] == [(10, 1), (20, 1), (40, 3)]
    assert runs[0]["final_test_acc"] == 0.4  # the runs of the last budget
    calls.clear()
    runs, budget = records.train_to_convergence(train_seeds, 10, max_doublings=1)  # the cap ends the doubling
    assert calls == [10, 20] and budget["epochs"] == 20 and budget["tried"][-1]["converged"] == 1


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


# ----------------------------------------------------------------------------------------------- committed records

CONVERGE = records.ROOT / "benchmarks" / "converge.py"


def load_converge():
    """benchmarks/converge.py as a module (it is a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nlbook_benchmarks_converge", CONVERGE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def committed_records() -> list[str]:
    """Every record directly under benchmarks/results that claims the format (the digits-era records)."""
    names = set()
    for path in records.RESULTS_DIR.glob("*.json"):
        try:
            if str(json.loads(path.read_text()).get("format", "")).startswith("nlbook-record"):
                names.add(path.stem)
        except (json.JSONDecodeError, AttributeError):
            continue  # other tools' files
    return sorted(names)


def converge_records() -> list[Path]:
    """Every record converge.py wrote: benchmarks/results/<dataset>_<profile>_<device>/<experiment>.json."""
    return sorted(p for p in records.RESULTS_DIR.glob("*_*_*/*.json"))


@pytest.mark.parametrize("experiment", committed_records())
def test_committed_record_is_complete(experiment):
    rec = load_record(experiment)  # format, structure and ranges
    prov = rec["provenance"]
    assert prov["git_commit"] and len(prov["git_commit"]) == 40, "provenance: git commit"
    assert prov["date"] and prov["command"].startswith("python "), "provenance: date and command"
    assert prov["machine"]["cpu"] and prov["machine"]["threads"] >= 1 and prov["machine"]["device"]
    assert prov["torch"] and prov["python"]
    assert rec["dataset"]["train_size"] > 0 and rec["dataset"]["test_size"] > 0
    for arm in rec["arms"]:
        where = f"{experiment}: arm {arm['name']} x={arm['x']}"
        assert len(arm["runs"]) >= 3, f"{where} has {len(arm['runs'])} seeds, the book needs >= 3"
        for run in arm["runs"]:
            assert run["epochs_run"] == arm["train_config"]["epochs"] == len(run["history"]), where
            assert [e["epoch"] for e in run["history"]] == list(range(1, run["epochs_run"] + 1)), where
            accs = [e["test_acc"] for e in run["history"]]
            assert run["final_test_acc"] == accs[-1] and run["best_test_acc"] == max(accs), where


def setup_of(path: Path):
    dataset, profile, device = path.parent.name.rsplit("_", 2)
    return load_converge().Setup(profile=profile, dataset=dataset, device=device)


@pytest.mark.parametrize("path", converge_records(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_converge_record_is_complete_and_matches_todays_code(path):
    """A record of converge.py: >= 3 seeds per arm, every budget's runs, provenance from a clean commit, and the
    arms benchmarks/converge.py would train today (spec, recipe, sizes, budget rule)."""
    rec = load_record(path)
    assert rec["format"] == records.FORMAT_V2 and rec["provenance"]["git_dirty"] is False
    for arm in rec["arms"]:
        assert len(arm["runs"]) >= 3 and arm["runs"] == arm["budget"]["budgets"][-1]["runs"]
        for budget in arm["budget"]["budgets"]:
            for run in budget["runs"]:
                assert run["trained"]["git_dirty"] is False and run["epochs"] == budget["epochs"]
    converge = load_converge()
    experiment = path.stem
    setup = setup_of(path)
    problems = stale_arms(rec, converge.planned_arms(experiment, setup))
    command = f"python benchmarks/converge.py {experiment.split('_')[0]} --dataset {setup.dataset}"
    assert not problems, f"{path} no longer matches the code:\n  " + "\n  ".join(problems) + f"\nRemake: {command}"


def converge_record(planned):
    """A converge.py record whose arms are ``planned`` (one budget of three fake runs each)."""
    rec = make_record()
    arms = []
    for arm in json.loads(json.dumps(planned)):
        runs = rec["arms"][0]["runs"]
        epochs = arm["budget"]["base_epochs"]
        budget = arm["budget"] | {"epochs": epochs, "converged": True, "budgets": [{"epochs": epochs, "runs": runs}]}
        arms.append(arm | {"runs": runs, "budget": budget})
    rec["arms"] = arms
    return rec


def test_staleness_check_fails_when_a_recipe_changes(monkeypatch):
    """Change the CNN recipe's learning rate: the check names the field."""
    from dataclasses import replace

    from nlbook.train import TrainConfig

    converge = load_converge()
    setup = converge.Setup()
    rec = converge_record(converge.planned_arms("ch3", setup))
    assert stale_arms(rec, converge.planned_arms("ch3", setup)) == []  # today's plan matches

    original = TrainConfig.from_profile.__func__

    def doubled_cnn_lr(cls, profile, recipe="cnn", **overrides):
        config = original(cls, profile, recipe, **overrides)
        return replace(config, lr=2 * config.lr) if recipe == "cnn" else config

    monkeypatch.setattr(TrainConfig, "from_profile", classmethod(doubled_cnn_lr))
    problems = stale_arms(rec, converge.planned_arms("ch3", setup))
    lr = rec["arms"][0]["train_config"]["lr"]
    assert f"arm 'resnet' train_config.lr: recorded {lr}, planned {2 * lr}" in problems
    assert any(p.startswith("arm 'nonlocal_resnet' train_config.lr") for p in problems)


def test_staleness_check_fails_when_the_model_code_changes():
    """Same spec, different network: the parameter count gives it away."""
    converge = load_converge()
    planned = converge.planned_arms("ch3", converge.Setup())
    rec = converge_record(planned)
    rec["arms"][1]["params"] += 1
    assert stale_arms(rec, planned) == [
        f"arm 'nonlocal_resnet' params: recorded {planned[1]['params'] + 1}, planned {planned[1]['params']}"
    ]


def test_planned_arms_cover_the_chapter_questions():
    converge = load_converge()
    setup = converge.Setup()
    ch4 = converge.planned_arms("ch4", setup)
    sizes = sorted({a["x"] for a in ch4})
    assert {a["name"] for a in ch4} == {"vit", "resnet"} and sizes == [1_000, 2_500, 5_000, 10_000]
    # a smaller training set gets more epochs (about the steps of the full run), at most 4x the base budget
    vit = {a["x"]: a["train_config"]["epochs"] for a in ch4 if a["name"] == "vit"}
    assert vit == {1_000: 80, 2_500: 80, 5_000: 40, 10_000: 20}
    assert all(a["train_config"]["max_train"] == a["x"] for a in ch4)
    ch5 = {a["name"]: a for a in converge.planned_arms("ch5", setup)}
    assert ch5["se_resnet_open"]["model_spec"]["gate_init"] == "open"
    assert ch5["se_resnet_open"]["baseline"] == "se_resnet" and ch5["coatnet"]["baseline"] == "resnet"
    ch6 = converge.planned_arms("ch6", setup)
    assert {a["name"] for a in ch6} == set(converge.model_names())
    assert all(a["model_spec"]["in_channels"] == 1 and a["train_config"]["max_test"] is None for a in ch6)
    with pytest.raises(ValueError, match="unknown experiment 'ch9'"):
        converge.planned_arms("ch9", setup)


def test_a_run_is_cached_by_what_decides_its_result():
    converge = load_converge()
    setup = converge.Setup()
    arm = converge.planned_arms("ch3", setup)[0]
    images, labels = torch.zeros(4, 1, 32, 32, dtype=torch.uint8), torch.zeros(4, dtype=torch.long)
    data = converge.ImageDataset(
        "fashion_mnist",
        ("a", "b"),
        images,
        labels,
        images,
        labels,
        (0.5,),
        (0.2,),
        val_images=images[:2],
        val_labels=labels[:2],
    )
    key = converge.cache_key(arm, 10, 0, data, setup)
    assert key == converge.cache_key(dict(arm, name="other", label="x"), 10, 0, data, setup)  # names don't matter
    others = {converge.cache_key(arm, 20, 0, data, setup), converge.cache_key(arm, 10, 1, data, setup)}
    assert len({key} | others) == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ch3", "--seeds", "1"], r"--seeds must be >= 2"),
        (["ch3", "--arms", "resnet,resnet"], r"--arms names an arm twice"),
        (["ch3", "--arms", "swin"], r"--arms \['swin'\] are not arms of \['ch3'\]"),
        (["ch3", "--train-size", "0"], r"--train-size must be a positive"),
        (["ch3", "--base-epochs", "-1"], r"--base-epochs must be a scale"),
    ],
)
def test_converge_checks_its_flags_before_training(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        load_converge().parse([*argv, "--out", str(tmp_path)])
    assert re.search(message, capsys.readouterr().err)


def test_converge_never_replaces_a_record_unless_forced(tmp_path, capsys):
    converge = load_converge()
    (tmp_path / "ch3_nonlocal.json").write_text("{}")
    with pytest.raises(SystemExit):
        converge.parse(["ch3", "--out", str(tmp_path)])
    assert "pass --force to replace them" in capsys.readouterr().err
    assert converge.parse(["ch3", "--out", str(tmp_path), "--force"])[2] == ["ch3"]
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        converge.parse(["ch3", "--out", str(tmp_path), "--force", "--cache", str(tmp_path / "file")])
    assert "--cache" in capsys.readouterr().err


def test_convergence_criterion():
    """The one criterion (nlbook.records.converged) that converge.py and longrange_sweep.py apply."""
    converge = records
    assert converge.converged([0.5, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.902])  # +0.002 in the last quarter
    assert not converge.converged([0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])  # still climbing
    assert not converge.converged([0.9])  # one epoch has no "before" to compare with


def test_record_figures():
    import matplotlib

    matplotlib.use("Agg")
    from nlbook.viz import plot_record_curves, plot_record_sweep

    rec = make_record()
    fig = plot_record_curves(rec)
    assert len(fig.axes[0].lines) == 2
    with pytest.raises(ValueError, match="not in the record"):
        plot_record_curves(rec, arms=["swin"])
    with pytest.raises(ValueError, match="no swept arms"):
        plot_record_sweep(rec)
    sweep = make_record()
    sweep["arms"] = [dict(arm, x=x) for arm in sweep["arms"] for x in (100, 1000)]
    fig = plot_record_sweep(sweep)
    assert len(fig.axes[0].collections) >= 2
    assert len(plot_record_curves(sweep).axes[0].lines) == 2  # one curve per name, at its largest x


def test_converged_counts_the_last_quarter_rounding_up_and_refuses_percent():
    # 10 epochs: the last ceil(2.5) = 3 epochs (round() would have taken 2, half to even)
    accs = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.9, 0.95, 0.9, 0.9]
    assert records.converged(accs) is False  # 0.95 is in the last three, beating 0.9
    assert records.converged(accs[:7] + [0.9, 0.9, 0.9]) is True
    with pytest.raises(ValueError, match=r"fractions in \[0, 1\] \(not percent\)"):
        records.converged([50.0, 60.0, 70.0])


def test_verdict_with_zero_spread_in_both_arms():
    assert verdict([0.9, 0.9, 0.9], [0.9, 0.9, 0.9]).word == "within the spread"
    assert verdict([0.9, 0.9, 0.9], [0.8, 0.8, 0.8]).word == "better"  # stated in the docstring


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda run: run.update(best_test_acc=1.0), r"best_test_acc is 1.0 but the history says"),
        (lambda run: run.update(final_test_acc=run["best_test_acc"] + 0.001), r"final_test_acc is .* but the history"),
        (lambda run: run["history"][0].update(test_loss="0.5"), r"test_loss: expected a finite number"),
        (lambda run: run.update(epochs_run=0, history=[]), r"epochs_run: expected an int >= 1"),
    ],
)
def test_a_record_that_cannot_be_true_is_refused(edit, message):
    rec = make_record()
    edit(rec["arms"][0]["runs"][0])
    with pytest.raises(RecordError, match=message):
        records.validate_record(rec)


def test_one_seed_shows_no_spread():
    rec = make_record()
    rec["arms"][0]["runs"] = rec["arms"][0]["runs"][:1]
    assert "(1 seed)" in records.results_table(rec) and "± 0.0" not in records.results_table(rec)
