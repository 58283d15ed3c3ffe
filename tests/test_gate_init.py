"""Chapter 5's gate-initialisation option: SE and CBAM gates that start open (near 1) instead of near 1/2."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nlbook.hybrid import CBAM, OPEN_GATE_LOGIT, SqueezeExcitation, hybrid_resnet
from nlbook.train import count_parameters


def test_default_keeps_pytorchs_draw():
    """gate_init="default" leaves the layers exactly as nn.Linear draws them: models built before are unchanged."""
    torch.manual_seed(0)
    se = SqueezeExcitation(32)
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(32, 8), nn.Linear(8, 32)
    assert torch.equal(se.fc1.weight, fc1.weight) and torch.equal(se.fc2.bias, fc2.bias)
    torch.manual_seed(0)
    cbam = CBAM(32)
    torch.manual_seed(0)
    mlp0, mlp2 = nn.Linear(32, 8, bias=False), nn.Linear(8, 32, bias=False)
    assert torch.equal(cbam.mlp[0].weight, mlp0.weight) and torch.equal(cbam.mlp[2].weight, mlp2.weight)
    assert cbam.mlp[2].bias is None and cbam.spatial_conv.bias is None


@pytest.mark.parametrize("channels", [16, 64])
def test_open_gates_start_near_one_default_gates_near_half(channels):
    torch.manual_seed(0)
    x = torch.randn(4, channels, 8, 8)
    with torch.no_grad():
        closed, opened = SqueezeExcitation(channels).gate(x), SqueezeExcitation(channels, gate_init="open").gate(x)
        assert 0.3 < closed.mean() < 0.7
        assert opened.mean() > 0.9 and opened.min() > 0.75
        mc, ms = CBAM(channels).gates(x)
        assert 0.2 < mc.mean() < 0.8 and 0.2 < ms.mean() < 0.8
        mc, ms = CBAM(channels, gate_init="open").gates(x)
        assert mc.mean() > 0.85 and ms.mean() > 0.85
    assert 1 / (1 + math.exp(-OPEN_GATE_LOGIT)) > 0.9


def test_open_cbam_adds_only_its_biases_and_reset_restores_them():
    assert count_parameters(CBAM(32, gate_init="open")) == count_parameters(CBAM(32)) + 32 + 1
    assert count_parameters(SqueezeExcitation(32, gate_init="open")) == count_parameters(SqueezeExcitation(32))
    cbam = CBAM(32, gate_init="open")
    with torch.no_grad():
        cbam.mlp[2].bias.zero_()
    cbam.reset_parameters()
    assert torch.all(cbam.mlp[2].bias == OPEN_GATE_LOGIT / 2) and cbam.spatial_conv.bias.item() == OPEN_GATE_LOGIT


@pytest.mark.parametrize("kind", ["se", "cbam"])
def test_hybrid_resnet_threads_gate_init_to_every_gate(kind):
    model = hybrid_resnet(kind, widths=(8, 16), depths=(1, 1), gate_init="open")
    gates = [m for m in model.modules() if isinstance(m, (SqueezeExcitation, CBAM))]
    assert len(gates) == 2 and all(g.gate_init == "open" for g in gates)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)  # ResNet's own initialisation left the biases open
    biases = [g.fc2.bias if kind == "se" else g.mlp[2].bias for g in gates]
    expected = OPEN_GATE_LOGIT if kind == "se" else OPEN_GATE_LOGIT / 2
    assert all(torch.all(b == expected) for b in biases)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SqueezeExcitation(16, gate_init="closed"), "SqueezeExcitation: gate_init must be"),
        (lambda: CBAM(16, gate_init=None), "CBAM: gate_init must be"),
        (lambda: hybrid_resnet("se", gate_init="half"), "hybrid_resnet: gate_init must be"),
        (lambda: hybrid_resnet("botnet", gate_init="open"), "needs kind 'se' or 'cbam'"),
    ],
)
def test_bad_gate_init_is_a_clear_error(build, message):
    with pytest.raises(ValueError, match=message):
        build()
