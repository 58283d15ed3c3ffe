"""Tests for nlbook.longrange: the generated long-range "same glyph?" task."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import pytest
import torch

from nlbook.cnn import ResNet
from nlbook.data import load_dataset, longrange_dataset
from nlbook.longrange import CLASSES, TEST_SEED, LongRangeTask, critical_distance, glyph_cells, render
from nlbook.longrange_sweep import (
    PooledMLPResNet,
    accuracy_by_distance,
    build_from_spec,
    glyph_pair_rule,
    plot_accuracy_vs_distance,
    strategy_models,
    train_config,
)
from nlbook.records import load_record, stale_arms


def _crops(images: torch.Tensor, positions: torch.Tensor, g: int) -> torch.Tensor:
    """(N, 2, C, g, g): the g×g boxes at both glyph positions, cut out with a plain loop (independent of render)."""
    out = []
    for img, pos in zip(images, positions, strict=True):
        out.append(torch.stack([img[:, y : y + g, x : x + g] for y, x in pos.tolist()]))
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------------------
# Determinism and the fixed test split
# ---------------------------------------------------------------------------------------------------------


def test_same_seed_same_batch_and_different_seed_different_batch():
    task = LongRangeTask(noise=0.02)
    a, b, c = task.sample(64, seed=3), task.sample(64, seed=3), task.sample(64, seed=4)
    for name in ("images", "labels", "positions", "glyph_ids", "distances"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.images, c.images)


def test_generator_argument_equals_seed_argument():
    task = LongRangeTask()
    a = task.sample(32, seed=11)
    b = task.sample(32, generator=torch.Generator().manual_seed(11))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_test_split_is_fixed_across_training_seeds():
    d0, d1 = longrange_dataset(64, 48, seed=0), longrange_dataset(64, 48, seed=1)
    assert torch.equal(d0.test_images, d1.test_images) and torch.equal(d0.test_labels, d1.test_labels)
    assert not torch.equal(d0.train_images, d1.train_images)
    assert TEST_SEED not in (0, 1)


def test_alphabet_is_fixed_and_distinct():
    t1, t2 = LongRangeTask(num_glyphs=6), LongRangeTask(num_glyphs=6, image_size=40)
    assert torch.equal(t1.alphabet(), t2.alphabet())
    alpha = t1.alphabet()
    assert alpha.shape == (6, 3, 3, 3) and alpha.dtype == torch.uint8
    flat = alpha.flatten(1)
    assert len({tuple(r.tolist()) for r in flat}) == 6
    # every glyph spans its whole box (a lit pixel in every row and column)
    lit = alpha.amax(1) > 0
    assert lit.any(1).all() and lit.any(2).all()
    shapes = LongRangeTask(num_glyphs=5, colored=False).alphabet()
    assert len({tuple((r > 0).flatten().tolist()) for r in shapes}) == 5  # distinct by shape alone


# ---------------------------------------------------------------------------------------------------------
# The labels: balance, what they depend on, and nothing else
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_labels_are_exactly_balanced(n):
    labels = LongRangeTask().sample(n, seed=0).labels
    assert labels.dtype == torch.int64 and set(labels.tolist()) <= {0, 1}
    assert int(labels.sum()) == n // 2


def test_label_is_equality_of_the_two_boxes_and_the_rest_is_black():
    task = LongRangeTask(num_glyphs=5)
    b = task.sample(300, seed=5)
    crops = _crops(b.images, b.positions, task.glyph_size)
    same_pixels = (crops[:, 0] == crops[:, 1]).flatten(1).all(1).long()
    assert torch.equal(same_pixels, b.labels)
    # the boxes show exactly the alphabet tiles named by glyph_ids
    assert torch.equal(crops, task.alphabet()[b.glyph_ids])
    # outside the two boxes every pixel is background: the label lives in those two regions only
    outside = b.images.clone()
    for i, pos in enumerate(b.positions.tolist()):
        for y, x in pos:
            outside[i, :, y : y + 3, x : x + 3] = 0
    assert int(outside.count_nonzero()) == 0


def test_perturbing_one_far_region_flips_the_label():
    """Redraw glyph 1 only: the images change inside its box and nowhere else, and the label flips."""
    task = LongRangeTask(distance=(20, 29))
    b = task.sample(200, seed=8)
    alphabet = task.alphabet()
    ids = b.glyph_ids.clone()
    # "same" → a different glyph; "different" → a copy of glyph 0
    other = ids[:, 0] + 1 + torch.randint(task.num_glyphs - 1, (len(b),), generator=torch.Generator().manual_seed(0))
    ids[:, 1] = torch.where(b.labels.bool(), other % task.num_glyphs, ids[:, 0])
    flipped = render(alphabet, ids, b.positions, task.image_size)
    crops = _crops(flipped, b.positions, 3)
    label_after = (crops[:, 0] == crops[:, 1]).flatten(1).all(1).long()
    assert torch.equal(label_after, 1 - b.labels)
    changed = (flipped != b.images).any(1)  # (N, H, W)
    for i, ((y0, x0), (y1, x1)) in enumerate(b.positions.tolist()):
        box = torch.zeros(32, 32, dtype=torch.bool)
        box[y1 : y1 + 3, x1 : x1 + 3] = True
        assert not (changed[i] & ~box).any(), "pixels outside glyph 1's box changed"
        assert changed[i].any()
        # and glyph 1's box is far from glyph 0's: at least 20 pixels in one direction
        assert max(abs(y1 - y0), abs(x1 - x0)) >= 20


def test_xor_quadruples_are_equally_likely():
    """Each unordered pair {a, b} appears as (a,a), (b,b), (a,b), (b,a) equally often (the 75 % bound)."""
    k, n = 3, 60_000
    b = LongRangeTask(num_glyphs=k).sample(n, seed=1)
    first, second = b.glyph_ids[:, 0], b.glyph_ids[:, 1]
    counts = torch.zeros(k, k)
    counts.index_put_((first, second), torch.ones(n), accumulate=True)
    # same pairs: first glyph uniform; different pairs: ordered pair uniform; both halves of the data
    expected_same, expected_diff = n / 2 / k, n / 2 / (k * (k - 1))
    assert torch.allclose(counts.diagonal(), torch.full((k,), expected_same), rtol=0.05)
    off = counts[~torch.eye(k, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, expected_diff), rtol=0.08)
    # every glyph is equally frequent in both classes: no single glyph predicts the label
    for label in (0, 1):
        ids = b.glyph_ids[b.labels == label].flatten()
        freq = torch.bincount(ids, minlength=k).float() / ids.numel()
        assert torch.allclose(freq, torch.full((k,), 1 / k), atol=0.01)


# ---------------------------------------------------------------------------------------------------------
# Geometry: distances, placement, the critical distance
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", [4, 17, 29, (10, 12), None])
def test_positions_are_inside_and_at_the_requested_distance(distance):
    task = LongRangeTask(distance=distance)
    b = task.sample(500, seed=2)
    lo, hi = task.distance_range
    cheb = (b.positions[:, 0] - b.positions[:, 1]).abs().amax(1)
    assert torch.equal(cheb, b.distances)
    assert int(b.distances.min()) >= lo and int(b.distances.max()) <= hi
    assert int(b.positions.min()) >= 0 and int(b.positions.max()) <= 32 - 3
    if distance is None or isinstance(distance, tuple):
        assert int(b.distances.min()) < int(b.distances.max())  # the range is actually used


def test_both_axes_and_directions_occur():
    b = LongRangeTask(distance=10).sample(400, seed=0)
    delta = b.positions[:, 1] - b.positions[:, 0]
    for axis in (0, 1):
        assert (delta[:, axis] == 10).any() and (delta[:, axis] == -10).any()


@pytest.mark.parametrize("r,g", [(1, 1), (5, 3), (13, 3), (9, 5)])
def test_critical_distance_matches_brute_force(r, g):
    """The smallest d at which no r-pixel window contains pixels of both glyphs, by enumeration."""

    def some_window_sees_both(d: int) -> bool:
        glyph0, glyph1 = set(range(0, g)), set(range(d, d + g))
        return any(set(range(a, a + r)) & glyph0 and set(range(a, a + r)) & glyph1 for a in range(-r, d + g + 1))

    brute = next(d for d in range(g, 200) if not some_window_sees_both(d))
    assert critical_distance(r, g) == brute
    assert LongRangeTask(glyph_size=g, image_size=4 * g + 2).critical_distance(r) == brute


@pytest.mark.parametrize("distance,additive", [(20, True), (8, False)])
def test_resnet_logit_is_additive_beyond_its_receptive_field(distance, additive):
    """The theorem behind the chapter, checked on the package's ResNet (random weights, eval mode, float64).

    Beyond the critical distance logit(a,a) + logit(b,b) = logit(a,b) + logit(b,a) exactly, so no such CNN
    can get all four right; closer than that the glyphs interact and the identity fails.
    """
    torch.manual_seed(0)
    model = ResNet(2, widths=(8, 8), depths=(1, 1)).double().eval()
    rf = model.receptive_field()
    assert rf == 13 and (distance >= critical_distance(rf, 3)) == additive
    with torch.no_grad():  # random BatchNorm statistics, so the network is far from linear
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    task = LongRangeTask(distance=distance)
    alphabet = task.alphabet()
    pos = torch.tensor([[[4, 5], [4, 5 + distance]]]).expand(4, 2, 2)
    ids = torch.tensor([[0, 0], [1, 1], [0, 1], [1, 0]])
    x = render(alphabet, ids, pos, 32).double() / 255.0
    with torch.no_grad():
        logits = model(x)
    score = logits[:, 1] - logits[:, 0]
    gap = (score[0] + score[1] - score[2] - score[3]).abs().item()
    if additive:
        assert gap < 1e-9 * score.abs().max().item()
    else:
        assert gap > 1e-4 * score.abs().max().item()


# ---------------------------------------------------------------------------------------------------------
# The dataset object
# ---------------------------------------------------------------------------------------------------------


def test_dataset_shapes_types_and_stats():
    ds = longrange_dataset(200, 100, seed=3)
    assert ds.name == "longrange" and ds.classes == CLASSES == ("different", "same")
    assert ds.train_images.shape == (200, 3, 32, 32) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (100, 3, 32, 32) and ds.test_labels.dtype == torch.int64
    assert len(ds.mean) == len(ds.std) == 3 and all(s > 0 for s in ds.std)
    x = ds.normalize(ds.train_images)
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-3


def test_load_dataset_dispatches_to_longrange():
    ds = load_dataset("longrange")
    assert ds.name == "longrange" and ds.num_classes == 2 and ds.image_size == 32


def test_other_image_sizes_and_glyph_sizes():
    task = LongRangeTask(image_size=48, glyph_size=5, num_glyphs=8, distance=(30, 43))
    b = task.sample(64, seed=0)
    assert b.images.shape == (64, 3, 48, 48)
    crops = _crops(b.images, b.positions, 5)
    assert torch.equal((crops[:, 0] == crops[:, 1]).flatten(1).all(1).long(), b.labels)


def test_noise_lights_background_pixels_but_never_the_glyphs():
    task = LongRangeTask(noise=0.1)
    b = task.sample(100, seed=0)
    crops = _crops(b.images, b.positions, 3)
    assert torch.equal(crops, task.alphabet()[b.glyph_ids])
    lit = (b.images.amax(1) > 0).float().mean().item()
    assert 0.08 < lit < 0.15


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_same_seed_same_images_on_cuda():
    task = LongRangeTask(noise=0.05)
    a, b = task.sample(128, seed=1), task.sample(128, seed=1, device="cuda")
    assert b.images.device.type == "cuda" and torch.equal(a.images, b.images.cpu())


# ---------------------------------------------------------------------------------------------------------
# Bad parameters → clear errors
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"distance": 30}, r"distance 30 is outside \[4, 29\]"),
        ({"distance": 3}, r"outside \[4, 29\]"),
        ({"distance": (10, 40)}, r"outside \[4, 29\]"),
        ({"distance": (12, 10)}, "low <= high"),
        ({"distance": "far"}, "distance must be"),
        ({"num_glyphs": 0}, "num_glyphs must be an int >= 2"),
        ({"num_glyphs": 1}, "num_glyphs must be an int >= 2"),
        ({"glyph_size": 40}, "glyph_size 40 is too big for image_size 32"),
        ({"glyph_size": 16}, "too big"),
        ({"glyph_size": 0}, "glyph_size must be an int >= 1"),
        ({"image_size": 1}, "image_size must be an int >= 2"),
        ({"noise": 1.5}, "noise must be a fraction"),
        ({"noise": -0.1}, "noise must be a fraction"),
        ({"num_glyphs": 3, "glyph_size": 1, "colored": False}, "cannot make 3 distinct 1×1 glyphs"),
    ],
)
def test_bad_task_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LongRangeTask(**kwargs)


def test_bad_dataset_and_sample_arguments():
    with pytest.raises(ValueError, match="seed and test_seed must differ"):
        longrange_dataset(10, 10, seed=5, test_seed=5)
    with pytest.raises(ValueError, match="n_train must be a positive int"):
        longrange_dataset(0, 10)
    with pytest.raises(ValueError, match="distance 31 is outside"):
        longrange_dataset(10, 10, distance=31)
    task = LongRangeTask()
    with pytest.raises(ValueError, match="exactly one of seed= and generator="):
        task.sample(4)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        task.sample(0, seed=0)
    with pytest.raises(ValueError, match="critical_distance: receptive_field"):
        critical_distance(0)


def test_bad_render_arguments():
    alpha = LongRangeTask().alphabet()
    ids = torch.tensor([[0, 1]])
    with pytest.raises(ValueError, match=r"positions must be in \[0, 29\]"):
        render(alpha, ids, torch.tensor([[[0, 0], [30, 0]]]), 32)
    with pytest.raises(ValueError, match=r"glyph_ids must be in \[0, 4\)"):
        render(alpha, torch.tensor([[0, 4]]), torch.tensor([[[0, 0], [9, 9]]]), 32)
    with pytest.raises(ValueError, match=r"positions \(N, J, 2\)"):
        render(alpha, ids, torch.tensor([[0, 0]]), 32)
    with pytest.raises(ValueError, match="alphabet must be uint8"):
        render(alpha.float(), ids, torch.tensor([[[0, 0], [9, 9]]]), 32)


def test_all_arrangements_can_be_rendered_at_the_same_positions():
    """render() draws any glyph pair at fixed positions: what the notebook's quadruple demo relies on."""
    alpha = LongRangeTask().alphabet()
    pos = torch.tensor([[[2, 2], [2, 27]]]).expand(4, 2, 2)
    ids = torch.tensor(list(itertools.product([0, 1], repeat=2)))
    imgs = render(alpha, ids, pos, 32)
    assert len({tuple(i.flatten().tolist()) for i in imgs}) == 4


# ---------------------------------------------------------------------------------------------------------
# The chapter's contestants, recipe and per-distance evaluation
# ---------------------------------------------------------------------------------------------------------


def test_strategy_models_build_and_report_their_receptive_fields():
    specs = strategy_models(image_size=16)
    assert list(specs) == [
        "cnn_rf7",
        "cnn_rf13",
        "cnn_rf25",
        "cnn_mlp",
        "nonlocal",
        "vit",
        "botnet",
        "swin",
        "sasa",
    ]
    x = torch.randn(2, 3, 16, 16)
    for key, spec in specs.items():
        torch.manual_seed(0)
        model = spec.build()
        assert model(x).shape == (2, 2), key
        if key.startswith("cnn_rf"):
            assert model.receptive_field() == spec.receptive_field == int(key.removeprefix("cnn_rf"))
    # the attention models share cnn_rf13's convolutions, so they get its receptive field
    assert specs["nonlocal"].receptive_field == specs["cnn_rf13"].build().receptive_field()
    assert specs["nonlocal"].build().nonlocal_blocks()
    assert specs["vit"].receptive_field is None
    assert specs["swin"].receptive_field is None


def _measured_receptive_field(model: torch.nn.Module) -> int:
    """Width of the input pixels one central position of the last feature map depends on (its gradient)."""
    model.eval()
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    feats = model.double().forward_features(x)
    h, w = feats.shape[-2:]
    feats[0, :, h // 2, w // 2].sum().backward()
    cols = (x.grad.abs().sum(dim=(0, 1, 2)) > 0).nonzero().flatten()
    return int(cols.max() - cols.min() + 1)


def test_the_sasa_contestant_has_the_receptive_field_it_states():
    specs = strategy_models(image_size=16)
    torch.manual_seed(0)
    # the measurement reproduces a plain CNN's theoretical field...
    assert _measured_receptive_field(specs["cnn_rf13"].build()) == 13
    # ...and SASA's 3×3 windows, pooled where the block strides, see exactly what the spec says
    assert _measured_receptive_field(specs["sasa"].build()) == specs["sasa"].receptive_field == 14
    with pytest.raises(ValueError, match="multiple of 4"):
        strategy_models(image_size=18)


def test_train_config_never_augments():
    cfg = train_config(3, seed=2)
    assert (cfg.epochs, cfg.seed, cfg.augment, cfg.optimizer) == (3, 2, False, "adamw")
    assert train_config(1, lr=1e-3).lr == 1e-3


class _Constant(torch.nn.Module):
    """Always answers "same": exactly 50 % on balanced labels."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.stack([self.w.expand(x.shape[0]), (self.w + 1).expand(x.shape[0])], 1)


def test_accuracy_by_distance_scores_fixed_images_per_distance():
    model = _Constant().train()
    task = LongRangeTask(image_size=16)
    acc = accuracy_by_distance(model, task, [4, 9, 13], (0.0,) * 3, (1.0,) * 3, n=100)
    assert acc == {4: 0.5, 9: 0.5, 13: 0.5}
    assert model.training  # mode restored


def test_glyph_cells_against_a_pixel_loop():
    b = LongRangeTask(image_size=16).sample(50, seed=4)
    for grid in (4, 8, 16):
        cells = glyph_cells(b.positions, 3, 16, grid)
        assert cells.shape == (50, 2, grid, grid)
        size = 16 // grid
        for i in range(50):
            for j in range(2):
                y, x = b.positions[i, j].tolist()
                ref = torch.zeros(grid, grid, dtype=torch.bool)
                for yy in range(y, y + 3):
                    for xx in range(x, x + 3):
                        ref[yy // size, xx // size] = True
                assert torch.equal(cells[i, j], ref)
    with pytest.raises(ValueError, match="not a multiple of grid"):
        glyph_cells(b.positions, 3, 16, 5)


def test_plot_accuracy_vs_distance():
    import matplotlib

    matplotlib.use("Agg")
    curves = {"CNN": {4: 0.9, 9: 0.6, 13: 0.5}, "ViT": {"4": (1.0, 0.0), "9": (0.98, 0.01), "13": (0.97, 0.02)}}
    fig = plot_accuracy_vs_distance(curves, {"CNN": 7, "ViT": None})
    ax = fig.axes[0]
    assert len(ax.lines) == 2 + 1 + 2  # two curves, one critical-distance line (RF 7 -> d* = 9), chance, bound
    assert sum(list(line.get_xdata()) == [8.5, 8.5] for line in ax.lines) == 1


# ---------------------------------------------------------------------------------------------------------
# Chapter 7's pooled-MLP control, the learned-rule diagnostics, and the recorded sweep
# ---------------------------------------------------------------------------------------------------------

_SWEEP_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "longrange_sweep.py"
_REGENERATE = "python benchmarks/longrange_sweep.py --force"


def _sweep_script():
    """benchmarks/longrange_sweep.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("longrange_sweep_script", _SWEEP_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pooled_mlp_control_shares_cnn_rf13s_convolutions_and_differs_only_in_the_head():
    specs = strategy_models(image_size=16)
    torch.manual_seed(0)
    plain = specs["cnn_rf13"].build()
    torch.manual_seed(0)
    control = specs["cnn_mlp"].build()
    assert isinstance(control, PooledMLPResNet) and specs["cnn_mlp"].receptive_field == plain.receptive_field()
    ours, theirs = control.state_dict(), plain.state_dict()
    backbone = [k for k in theirs if not k.startswith("head.")]
    assert backbone and all(torch.equal(ours[k], theirs[k]) for k in backbone)  # same seed, same convolutions
    assert [type(m) for m in control.head] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
    assert control(torch.randn(3, 3, 16, 16)).shape == (3, 2)
    with pytest.raises(ValueError, match="hidden must be a positive int"):
        PooledMLPResNet(2, widths=(8,), depths=(1,), hidden=0)


def test_build_from_spec_rebuilds_every_contestant_and_rejects_unknown_builders():
    for key, spec in strategy_models(image_size=16).items():
        torch.manual_seed(1)
        a = spec.build()
        torch.manual_seed(1)
        b = build_from_spec(json.loads(json.dumps(spec.model_spec)))  # what a record holds, after JSON
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())), key
    with pytest.raises(ValueError, match="model_spec must be"):
        build_from_spec({"builder": "Nope"})


def test_glyph_pair_rule_of_a_constant_model():
    batch = LongRangeTask(image_size=16).sample(400, seed=5)
    rule = glyph_pair_rule(_Constant(), batch, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    said = int(_Constant()(torch.zeros(1, 3, 4, 4)).argmax(1))
    assert rule.accuracy == pytest.approx(0.5) and rule.said_same == float(said) and rule.determined == 1.0
    assert set(rule.said_same_by_pair) == {(a, b) for a in range(4) for b in range(a, 4)}  # all 10 pairs drawn
    with pytest.raises(TypeError, match="LongRangeBatch"):
        glyph_pair_rule(_Constant(), batch.images, (0.0,) * 3, (1.0,) * 3)


def test_glyph_pair_rule_sees_a_rule_of_glyph_types():
    # A "model" that says same iff glyph 0 (red) is in the image: a rule of glyph types:
    # its answer is fixed by the pair, and its accuracy is what the sampler's quadruples give it.
    task = LongRangeTask(image_size=16)
    batch = task.sample(2000, seed=6)
    red = task.alphabet()[0].amax((1, 2)).float()

    class SaysSameIfRed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            hit = ((x - red.view(1, 3, 1, 1) / 255).abs() < 1e-3).all(1).flatten(1).any(1).float()
            return torch.stack([1 - hit, hit], 1)

    rule = glyph_pair_rule(SaysSameIfRed(), batch, (0.0,) * 3, (1.0,) * 3)
    assert rule.determined == 1.0
    assert rule.said_same_by_pair[(0, 0)] == 1.0 and rule.said_same_by_pair[(1, 1)] == 0.0
    # same: right on (0,0) only (1/4 of "same"); different: wrong on the 3 of 6 pairs holding glyph 0 -> 1/2
    assert rule.accuracy == pytest.approx(0.5 * 0.25 + 0.5 * 0.5, abs=0.04)


def test_ch7_record_matches_todays_code():
    """The committed record was trained with the models and recipe the script would use today."""
    record = load_record("ch7_longrange")
    planned = _sweep_script().planned_arms()
    problems = stale_arms(record, planned)
    assert not problems, (
        "benchmarks/results/ch7_longrange.json is stale — regenerate it with  "
        f"{_REGENERATE}  (then re-execute book/07_long_range.ipynb):\n" + "\n".join(problems)
    )
    for arm in record["arms"]:
        assert len(arm["runs"]) >= 3, f"arm {arm['name']} has {len(arm['runs'])} seeds; regenerate with {_REGENERATE}"
        for run in arm["runs"]:
            assert set(run["acc_by_distance"]) == {str(d) for d in record["dataset"]["eval_distances"]}


def test_ch7_staleness_check_fails_when_a_recipe_or_a_model_changes(monkeypatch):
    script = _sweep_script()
    record = {"arms": [arm | {"runs": []} for arm in script.planned_arms()]}
    assert stale_arms(record, script.planned_arms()) == []
    original = script.train_config
    monkeypatch.setattr(
        script, "train_config", lambda epochs, seed=0, **kw: original(epochs, seed, **(kw | {"lr": 1e-3}))
    )
    problems = stale_arms(record, script.planned_arms())
    assert len(problems) == len(record["arms"]) and all("train_config.lr" in p for p in problems)
    monkeypatch.setattr(script, "train_config", original)
    models = script.strategy_models

    def deeper_vit(image_size):
        specs = models(image_size)
        vit = specs["vit"]
        kwargs = vit.model_spec["kwargs"] | {"depth": 3}
        specs["vit"] = type(vit)(vit.label, vit.strategy, {**vit.model_spec, "kwargs": kwargs}, vit.receptive_field)
        return specs

    monkeypatch.setattr(script, "strategy_models", deeper_vit)
    problems = stale_arms(record, script.planned_arms())
    assert problems and all(p.startswith("arm 'vit' ") for p in problems)
    assert any("kwargs.depth" in p for p in problems) and any("params" in p for p in problems)
