"""nlbook.bench: FLOPs against hand counts, parameter counts, memory accounting, timing fields, tables."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nlbook import bench, comparison
from nlbook.attention import scaled_dot_product_attention

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


# ------------------------------------------------------------------------------------------------ FLOPs


def test_linear_flops_match_hand_count():
    layer = nn.Linear(7, 5)
    x = torch.randn(3, 7)
    # forward: 2·B·in·out (bias additions are not counted)
    assert bench.count_flops(layer, x) == 2 * 3 * 7 * 5
    # training step, input without grad: forward + grad of the weight only
    assert bench.count_flops(layer, x, backward=True) == 2 * (2 * 3 * 7 * 5)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_flops_match_hand_count(stride):
    conv = nn.Conv2d(3, 8, 3, stride=stride, padding=1)
    x = torch.randn(2, 3, 10, 10)
    out = (10 + 2 - 3) // stride + 1
    assert bench.count_flops(conv, x) == 2 * 2 * out * out * 8 * 3 * 3 * 3


def test_grouped_conv_backward_counts_groups():
    # torch's own formula drops `groups` from the weight-gradient term; ours must give exactly 1× forward for
    # each of grad_input and grad_weight.
    first, depthwise = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8)
    model = nn.Sequential(first, depthwise)
    x = torch.randn(2, 3, 6, 6)
    f1 = 2 * 2 * 36 * 8 * 3 * 9
    f2 = 2 * 2 * 36 * 8 * 1 * 9
    assert bench.count_flops(model, x) == f1 + f2
    # first conv: no grad for the input image → weight gradient only; depthwise: input and weight gradients
    assert bench.count_flops(model, x, backward=True) == (f1 + f1) + (f2 + 2 * f2)


class _Attend(nn.Module):
    def __init__(self, impl: str):
        super().__init__()
        self.impl = impl
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return scaled_dot_product_attention(q * self.scale, q, q, impl=self.impl)


def test_fused_attention_flops_are_counted_on_every_device():
    q = torch.randn(2, 3, 16, 8)  # (B, heads, N, d)
    expected = 2 * (2 * 2 * 3 * 16 * 16 * 8)  # q kᵀ and weights · v, 2 FLOPs per multiply-add each
    assert bench.count_flops(_Attend("fused"), q) == expected
    assert bench.count_flops(_Attend("explicit"), q) == expected


def test_count_flops_leaves_model_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bench.count_flops(model, torch.randn(2, 3, 8, 8), backward=True)
    bench.count_flops(model, torch.randn(2, 3, 8, 8))
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


# ------------------------------------------------------------------------------------------------ memory


def test_peak_step_memory_counts_a_known_allocation():
    n = 250_000  # 1,000,000 bytes of float32

    def step() -> None:
        a = torch.ones(n)
        del a  # freed before the next one: the peak is one tensor, not two
        b = torch.ones(n)
        del b

    peak = bench.peak_step_memory(step, torch.device("cpu"))
    assert 4 * n <= peak < 4 * n + 64 * 1024


def test_peak_step_memory_sees_two_live_tensors():
    n = 250_000

    def step() -> None:
        a, b = torch.ones(n), torch.ones(n)
        del a, b

    assert 8 * n <= bench.peak_step_memory(step, torch.device("cpu")) < 8 * n + 64 * 1024


# ------------------------------------------------------------------------------------------------ measure


def _small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


def test_measure_fields_are_sane():
    model = _small_cnn()
    r = bench.measure(model, (4, 3, 16, 16), device="cpu", warmup=1, repeats=2, name="tiny")
    assert r.name == "tiny" and r.device == "cpu" and r.batch_size == 4 and r.image_shape == (3, 16, 16)
    assert r.params == r.trainable_params == (8 * 3 * 9 + 8) + (8 + 8) + (8 * 4 + 4)
    conv = 2 * 16 * 16 * 8 * 3 * 9
    linear = 2 * 8 * 4
    assert r.flops_forward == conv + linear  # per image
    # the image needs no gradient: the conv costs forward + weight gradient; the linear also its input gradient
    assert r.flops_train == 2 * conv + 3 * linear
    for speed in (r.infer_images_per_s, r.train_images_per_s):
        assert speed is not None and math.isfinite(speed) and speed > 0
    activation = 4 * 8 * 16 * 16 * 4  # bytes of the conv output for the batch
    resident = 4 * r.params + 4 * 4 * 3 * 16 * 16 + 4 * 8 * 2 + 8  # weights, input, BN running stats, counter
    assert r.infer_peak_bytes >= resident + activation
    assert r.train_peak_bytes >= r.infer_peak_bytes  # saved activations, gradients, momentum
    assert "profiler" in r.memory_method
    d = r.to_dict()
    assert d["image_shape"] == [3, 16, 16] and d["params"] == r.params


def test_measure_leaves_model_untouched():
    model = _small_cnn().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bench.measure(model, (4, 3, 8, 8), device="cpu", warmup=1, repeats=1, memory=False)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    model.eval()
    bench.measure(model, torch.randn(2, 3, 8, 8), device="cpu", warmup=0, repeats=1, train=False, memory=False)
    assert not model.training


def test_measure_inference_only_and_no_memory():
    r = bench.measure(_small_cnn(), (2, 3, 8, 8), device="cpu", warmup=0, repeats=1, train=False, memory=False)
    assert r.train_images_per_s is None and r.flops_train is None and r.train_peak_bytes is None
    assert r.infer_peak_bytes is None and r.memory_method == "not measured"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"sample": (2, 3, 8)}, ValueError, "four positive ints"),
        ({"sample": (2, 3, 0, 8)}, ValueError, "four positive ints"),
        ({"sample": torch.zeros(2, 3, 8, 8, dtype=torch.uint8)}, ValueError, "float tensor"),
        ({"repeats": 0}, ValueError, "repeats"),
        ({"warmup": -1}, ValueError, "warmup"),
        ({"device": "meta"}, ValueError, "meta"),
    ],
)
def test_measure_bad_input(kwargs, error, match):
    args = {"sample": (2, 3, 8, 8), "device": "cpu"} | kwargs
    sample = args.pop("sample")
    with pytest.raises(error, match=match):
        bench.measure(_small_cnn(), sample, **args)


def test_measure_rejects_non_module():
    with pytest.raises(TypeError, match="nn.Module"):
        bench.measure(lambda x: x, (2, 3, 8, 8))


@cuda
@pytest.mark.gpu
def test_measure_on_cuda_uses_allocator_stats():
    r = bench.measure(_small_cnn(), (8, 3, 16, 16), device="cuda", warmup=1, repeats=2)
    assert r.device.startswith("cuda") and "CUDA allocator" in r.memory_method
    assert r.train_peak_bytes > r.infer_peak_bytes > 0
    r16 = bench.measure(_small_cnn(), (8, 3, 16, 16), device="cuda", warmup=1, repeats=2, amp_dtype=torch.bfloat16)
    assert r16.amp_dtype == "bfloat16" and r16.flops_forward == r.flops_forward


# ------------------------------------------------------------------------------------------------ tables


def _result(name: str, params: int, speed: float) -> bench.BenchResult:
    return bench.BenchResult(
        name=name, device="cpu", hardware="test", batch_size=2, image_shape=(3, 8, 8), params=params,
        trainable_params=params, flops_forward=10 * params, flops_train=30 * params, infer_images_per_s=speed,
        train_images_per_s=speed / 3, infer_peak_bytes=1 << 20, train_peak_bytes=3 << 20, memory_method="test",
        amp_dtype=None, warmup=0, repeats=1,
    )  # fmt: skip


def _run(name: str, seed: int, acc: float, cost: bench.BenchResult | None) -> comparison.ModelRun:
    return comparison.ModelRun(
        name=name, strategy="baseline" if name == "resnet" else "hybrid", seed=seed, dataset="digits",
        profile="quick", test_acc=acc, train_wall_s=1.0, epochs=1, train_images=10, test_images=10, config={},
        history=[], cost=cost,
    )  # fmt: skip


def test_summarize_means_and_spread_over_seeds():
    base, other = _result("resnet", 1000, 100.0), _result("vit", 2000, 50.0)
    runs = [_run("resnet", 0, 0.5, base), _run("resnet", 1, 0.7, None), _run("vit", 0, 0.4, other)]
    rows = comparison.summarize(runs)
    assert [r["model"] for r in rows] == ["resnet", "vit"]
    assert rows[0]["acc_mean"] == pytest.approx(0.6) and rows[0]["acc_std"] == pytest.approx(math.sqrt(0.02))
    assert rows[0]["n_seeds"] == 2 and rows[0]["params"] == 1000
    assert rows[1]["acc_std"] is None and rows[1]["n_seeds"] == 1
    table = comparison.format_table(rows, baseline="resnet", title="T")
    lines = table.splitlines()
    assert lines[0] == "T" and "×" in lines[1]
    vit_line = next(line for line in lines if line.startswith("vit"))
    assert "2.00" in vit_line and "0.50" in vit_line  # twice the parameters, half the speed
    assert "60.0 ± 14.1" in table and "40.0" in table


def test_format_table_baseline_must_exist():
    rows = comparison.summarize([_result("vit", 10, 1.0)])
    with pytest.raises(ValueError, match="baseline 'resnet' is not among the rows"):
        comparison.format_table(rows, baseline="resnet")
    table = comparison.format_table(rows, baseline=None)
    assert "×" not in table and table.splitlines()[-1].startswith("vit")


def test_peak_step_memory_needs_a_callable():
    with pytest.raises(TypeError, match="callable"):
        bench.peak_step_memory(3, torch.device("cpu"))


def test_summarize_rejects_other_items():
    with pytest.raises(TypeError, match="BenchResult or ModelRun"):
        comparison.summarize([{"model": "x"}])


# ------------------------------------------------------------------------------------------------ benchmark


@pytest.mark.slow
def test_benchmark_model_trains_and_measures(tmp_path):
    from nlbook.data import load_dataset

    data = load_dataset("digits")
    run = comparison.benchmark_model(
        "resnet", data, profile="quick", device="cpu", seed=1, epochs=1, max_train=128, max_test=64,
        batch_size=32, warmup=0, repeats=1, progress=False,
    )  # fmt: skip
    assert run.name == "resnet" and run.strategy == "baseline" and run.dataset == "digits" and run.profile == "quick"
    assert run.epochs == 1 and len(run.history) == 1 and run.train_images == 128 and run.test_images == 64
    assert 0.0 <= run.test_acc <= 1.0 and run.train_wall_s > 0 and run.config["seed"] == 1
    assert run.cost is not None and run.cost.batch_size == 32 and run.cost.params > 0
    assert run.to_dict()["cost"]["params"] == run.cost.params


def test_benchmark_model_unknown_name():
    with pytest.raises(ValueError, match="resnet"):
        comparison.benchmark_model("alexnet", data=None)


# ------------------------------------------------------------------------------------------------ scripts


def _script(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_run_all_writes_a_complete_record(tmp_path, capsys):
    import csv

    from nlbook.records import load_record
    from nlbook.records import summarize as summarize_record

    run_all = _script("run_all")
    argv = "--profile quick --dataset digits --seeds 2 --models resnet,vit --epochs 2 --max-train 64 --max-test 32"
    argv += f" --batch-size 32 --repeats 1 --warmup 0 --device cpu --out {tmp_path}"
    path = run_all.main(argv.split())
    record = load_record(path)  # the book's one record format, validated
    assert path.parent == tmp_path and path.name == "zoo_benchmark__digits_quick_cpu.json"
    assert record["dataset"]["name"] == "digits" and record["profile"]["name"] == "quick"
    assert record["provenance"]["machine"]["device"] == "cpu" and record["provenance"]["torch"] == torch.__version__
    assert record["provenance"]["command"].startswith("python benchmarks/run_all.py --profile quick")
    assert record["budget"]["epochs"] == 2 and record["budget"]["train_images"] == 64
    assert [a["name"] for a in record["arms"]] == ["resnet", "vit"]
    assert [[r["seed"] for r in a["runs"]] for a in record["arms"]] == [[0, 1], [0, 1]]
    assert all(len(r["history"]) == r["epochs_run"] == 2 for a in record["arms"] for r in a["runs"])
    assert all(a["cost"]["flops_forward"] > 0 and a["params"] > 0 for a in record["arms"])  # measured once per model
    assert "seed" not in record["arms"][0]["train_config"]
    summary = {s.name: s for s in summarize_record(record)}
    rows = {r["model"]: r for r in record["summary"]}
    assert summary["resnet"].final_test_acc.mean == pytest.approx(rows["resnet"]["acc_mean"])
    assert rows["resnet"]["n_seeds"] == 2 and rows["vit"]["params"] == record["arms"][1]["params"]
    assert record["targets"]["cnn_baseline_93"]["applies_to_this_run"] is False
    assert record["targets"]["cnn_baseline_93"]["measured"] == rows["resnet"]["acc_mean"]
    assert len(record["targets"]["cnn_baseline_93"]["time_to_accuracy_s"]) == 2  # one per seed
    assert record["targets"]["hybrid_at_or_above_baseline"]["met"] is None  # no hybrid was run
    with path.with_suffix(".csv").open() as f:
        table = list(csv.DictReader(f))
    hardware = record["provenance"]["hardware"]["name"]
    assert [r["model"] for r in table] == ["resnet", "vit"] and table[0]["hardware"] == hardware
    out = capsys.readouterr().out
    assert "target vit_85" in out and "params (M)" in out
    # a second run never overwrites the first
    again = run_all.main(argv.replace("resnet,vit", "resnet").split())
    assert again != path and again.name.startswith("zoo_benchmark__digits_quick_cpu_") and path.is_file()


def test_run_all_rejects_unknown_model():
    with pytest.raises(SystemExit):
        _script("run_all").parse_args(["--models", "resnet,alexnet"])


def _history(*epochs: tuple[float, float]) -> list[dict[str, float]]:
    return [{"seconds": seconds, "test_acc": acc} for seconds, acc in epochs]


def test_time_to_accuracy_sums_training_time_up_to_the_first_epoch_at_the_threshold():
    from nlbook.train import EpochStats

    history = _history((100.0, 0.80), (120.0, 0.931), (130.0, 0.92), (110.0, 0.95))
    assert comparison.time_to_accuracy(history, 0.93) == 220.0  # the first crossing counts, not the last epoch
    assert comparison.time_to_accuracy(history, 0.95) == 460.0
    assert comparison.time_to_accuracy(history, 0.96) is None
    assert comparison.time_to_accuracy([], 0.5) is None
    stats = [EpochStats(1, 0.1, 1.0, 0.5, 1.0, 0.6, 12.5, 100.0), EpochStats(2, 0.1, 0.9, 0.6, 0.9, 0.7, 10.0, 90.0)]
    assert comparison.time_to_accuracy(stats, 0.65) == 22.5


def test_check_targets_logic():
    check = _script("run_all").check_targets
    rows = [
        {"model": "resnet", "strategy": "baseline", "acc_mean": 0.94, "train_wall_s": 700.0},
        {"model": "vit", "strategy": "replace", "acc_mean": 0.86, "train_wall_s": 700.0},
        {"model": "se_resnet", "strategy": "hybrid", "acc_mean": 0.945, "train_wall_s": 550.0},
    ]
    runs = [
        # two seeds of the ResNet: both pass 93 % before 10 minutes, although the whole runs take longer
        {"name": "resnet", "history": _history((300.0, 0.90), (250.0, 0.935), (150.0, 0.94))},
        {"name": "resnet", "history": _history((300.0, 0.92), (280.0, 0.931), (120.0, 0.94))},
        # the ViT reaches 85 % only after 11 minutes
        {"name": "vit", "history": _history((330.0, 0.80), (330.0, 0.86))},
    ]
    t = check(rows, runs, "full", "cifar10")
    assert t["cnn_baseline_93"]["met"] is True and t["cnn_baseline_93"]["applies_to_this_run"] is True
    assert t["cnn_baseline_93"]["time_to_accuracy_s"] == [550.0, 580.0]
    assert t["vit_85"]["met"] is False and t["vit_85"]["time_to_accuracy_s"] == [660.0]
    assert t["hybrid_at_or_above_baseline"]["met"] is True
    # every seed has to make it: one ResNet seed that never reaches 93 % fails the target
    runs[1]["history"] = _history((300.0, 0.92), (300.0, 0.925))
    assert check(rows, runs, "full", "cifar10")["cnn_baseline_93"]["met"] is False
    rows[2]["acc_mean"] = 0.9
    assert check(rows, runs, "full", "cifar10")["hybrid_at_or_above_baseline"]["met"] is False
    assert check(rows, [], "full", "cifar10")["vit_85"]["met"] is None  # no run of the model: not measured
    assert check(rows, runs, "quick", "digits")["cnn_baseline_93"]["applies_to_this_run"] is False


@pytest.mark.slow
def test_compare_models_prints_the_cost_table(capsys):
    compare = _script("compare_models")
    argv = "--profile quick --models resnet,vit --batch-size 4 --repeats 1 --warmup 0 --device cpu --no-memory"
    results = compare.main(argv.split())
    assert [r.name for r in results] == ["resnet", "vit"]
    out = capsys.readouterr().out
    assert "profile quick" in out and "GFLOPs/img" in out and "×" in out
    assert any(line.startswith("vit") for line in out.splitlines())


def test_estimate_training_seconds_is_counted_flops_over_sustained_rate() -> None:
    from nlbook.bench import T4_FP16_PEAK_FLOPS, count_flops, estimate_training_seconds

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.zeros(1, 3, 8, 8))  # materialise the lazy layer
    x = torch.zeros(1, 3, 8, 8)
    train, test = count_flops(model, x, backward=True), count_flops(model, x)
    got = estimate_training_seconds(model, (3, 8, 8), train_images=100, test_images=10, epochs=2, utilisation=0.5)
    assert got == pytest.approx(2 * (100 * train + 10 * test) / (T4_FP16_PEAK_FLOPS * 0.5))
    with pytest.raises(ValueError, match="utilisation"):
        estimate_training_seconds(model, (3, 8, 8), train_images=1, test_images=0, epochs=1, utilisation=1.5)
    with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\)"):
        estimate_training_seconds(model, (8, 8), train_images=1, test_images=0, epochs=1)
