"""Chapter 1: convolution arithmetic, receptive fields and the ResNet baseline."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nlbook.checks import check_image_batch
from nlbook.cnn import BasicBlock, ResNet, conv2d_sliding, conv_output_size, receptive_field


@pytest.mark.parametrize("size", [7, 8, 32])
@pytest.mark.parametrize(
    "kernel,stride,padding,dilation", [(3, 1, 1, 1), (3, 2, 1, 1), (5, 2, 0, 1), (3, 1, 2, 2), (1, 3, 0, 1)]
)
def test_output_size_formula_matches_conv2d(size, kernel, stride, padding, dilation):
    x = torch.zeros(1, 1, size, size)
    w = torch.zeros(1, 1, kernel, kernel)
    if size + 2 * padding < dilation * (kernel - 1) + 1:
        pytest.skip("kernel larger than padded input")
    out = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
    assert out.shape[-1] == conv_output_size(size, kernel, stride, padding, dilation)


def test_output_size_matches_pooling():
    x = torch.zeros(1, 1, 15, 15)
    assert F.max_pool2d(x, 3, 2).shape[-1] == conv_output_size(15, 3, 2)


@pytest.mark.parametrize(
    "bad", [dict(size=0, kernel_size=3), dict(size=8, kernel_size=3, stride=0), dict(size=2, kernel_size=5)]
)
def test_output_size_rejects_bad_arguments(bad):
    with pytest.raises(ValueError, match="conv_output_size"):
        conv_output_size(**bad)


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1)])
def test_sliding_convolution_equals_conv2d(stride, padding):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    ours = conv2d_sliding(x, w, b, stride=stride, padding=padding)
    torch.testing.assert_close(ours, F.conv2d(x, w, b, stride=stride, padding=padding))


def test_receptive_field_recurrence():
    # three 3x3 convolutions see 7x7; a stride-2 layer doubles the growth of every later layer
    rf = receptive_field([("a", 3, 1), ("b", 3, 1), ("c", 3, 1)])
    assert [r.size for r in rf] == [3, 5, 7]
    rf = receptive_field([("a", 3, 2), ("b", 3, 1)])
    assert [(r.size, r.jump) for r in rf] == [(3, 2), (7, 2)]


def test_receptive_field_matches_gradient_support():
    """The theoretical receptive field is exactly the set of input pixels with non-zero gradient."""
    torch.manual_seed(0)
    model = ResNet(widths=(4, 8), depths=(1, 1)).double().eval()
    x = torch.randn(1, 3, 48, 48, dtype=torch.float64, requires_grad=True)
    fmap = model.forward_features(x)
    centre = fmap.shape[-1] // 2
    fmap[0, :, centre, centre].sum().backward()
    rows = x.grad[0].abs().sum(0).sum(1).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == model.receptive_field()


@pytest.mark.parametrize(
    "widths,depths,size", [((8, 16), (1, 1), 32), ((8, 16, 32, 64), (2, 2, 2, 2), 32), ((8,), (3,), 17)]
)
def test_resnet_shapes(widths, depths, size):
    model = ResNet(num_classes=7, widths=widths, depths=depths)
    x = torch.randn(2, 3, size, size)
    assert model(x).shape == (2, 7)
    down = 2 ** (len(widths) - 1)
    assert model.forward_features(x).shape == (2, widths[-1], -(-size // down), -(-size // down))


def test_resnet18_parameter_count_matches_torchvision_blocks():
    """Our CIFAR ResNet-18 differs from torchvision's only in the stem (3x3 conv, no max-pool) and head."""
    import torchvision

    ours = ResNet(num_classes=10)
    tv = torchvision.models.resnet18(num_classes=10)
    ours_body = sum(p.numel() for p in ours.stages.parameters())
    tv_body = sum(p.numel() for n, p in tv.named_parameters() if n.startswith("layer"))
    assert ours_body == tv_body


def test_hooks_insert_and_replace_blocks():
    seen = []

    def insert(stage, index, channels):
        seen.append((stage, index, channels))
        return nn.Identity() if stage == 1 else None

    def factory(stage, index, cin, cout, stride):
        return BasicBlock(cin, cout, stride, attention=nn.Identity())

    model = ResNet(widths=(8, 16), depths=(2, 1), insert_after=insert, block_factory=factory)
    assert seen == [(0, 0, 8), (0, 1, 8), (1, 0, 16)]
    assert isinstance(model.stages[1][1], nn.Identity)
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 10)


def test_inserted_modules_keep_their_own_initialisation():
    def insert(stage, index, channels):
        bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(bn.weight)
        return bn

    model = ResNet(widths=(8,), depths=(1,), insert_after=insert)
    assert model.stages[0][1].weight.abs().sum() == 0


@pytest.mark.parametrize(
    "x,err,msg",
    [
        (torch.randn(3, 32, 32), ValueError, "4-D tensor"),
        (torch.randn(2, 1, 32, 32), ValueError, "expects 3 input channels"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), TypeError, "floating-point"),
        ([[1.0]], TypeError, "torch.Tensor"),
    ],
)
def test_resnet_bad_input(x, err, msg):
    with pytest.raises(err, match=msg):
        ResNet(widths=(8,), depths=(1,))(x)


@pytest.mark.parametrize(
    "kw", [dict(widths=(8, 16), depths=(1,)), dict(widths=(), depths=()), dict(widths=(0,), depths=(1,))]
)
def test_resnet_bad_config(kw):
    with pytest.raises(ValueError, match="ResNet"):
        ResNet(**kw)


def test_check_image_batch_accepts_good_input():
    check_image_batch(torch.randn(1, 3, 4, 4), 3, "here")
