"""The tiny-map GEMM convolutions compute what torch's own layers compute."""
import copy

import pytest
import torch
from torch import nn

import models.gemm_conv as gemm_conv
from models import build_generator
from models.gemm_conv import GEMM_CHANNELS_PER_POSITION, GemmConv2d, GemmConvTranspose2d, with_gemm_convs, with_torch_layers


@pytest.fixture
def unfold_calls(monkeypatch):
    """How many times the GEMM path ran (it unfolds, or folds, exactly once per call)."""
    calls = []
    for name in ("unfold", "fold"):
        real = getattr(gemm_conv.F, name)
        monkeypatch.setattr(gemm_conv.F, name, lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    return calls


def _stock(layer: nn.Module) -> nn.Module:
    return with_torch_layers(copy.copy(layer))  # shares the parameters


C = 4 * GEMM_CHANNELS_PER_POSITION  # enough channels for a 2x2 map to take the GEMM path
CASES = [
    # (layer, input size): the U-Net's bottleneck convolutions, with and without bias
    (lambda: GemmConv2d(C, 16, 4, 2, 1, bias=False), 4),   # 4x4 -> 2x2
    (lambda: GemmConv2d(C, 16, 4, 2, 1), 2),               # 2x2 -> 1x1
    (lambda: GemmConv2d(C, 16, 1, 2, 0), 4),               # resunet's 1x1 shortcut
    (lambda: GemmConvTranspose2d(C, 16, 4, 2, 1, bias=False), 1),
    (lambda: GemmConvTranspose2d(C, 16, 4, 2, 1), 2),
]


@pytest.mark.parametrize("make, size", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_tiny_maps_take_the_gemm_path_and_match_torch(make, size, channels_last, unfold_calls):
    torch.manual_seed(0)
    layer = make()
    if layer.bias is not None:
        nn.init.normal_(layer.bias)
    stock = _stock(layer)
    x = torch.randn(5, C, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    out, ref = layer(xs[0]), stock(xs[1])
    assert len(unfold_calls) == 1
    assert out.shape == ref.shape
    # the memory format torch's layer returns (a size-1 dimension's stride is immaterial)
    assert [s for s, n in zip(out.stride(), out.shape) if n > 1] == [s for s, n in zip(ref.stride(), ref.shape) if n > 1]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)

    grad = torch.randn_like(ref)
    weight_grads = []
    for y, net in ((out, layer), (ref, stock)):
        layer.zero_grad()
        y.backward(grad)
        weight_grads.append([p.grad.clone() for p in layer.parameters()])
    torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-5, atol=1e-5)
    for a, b in zip(*weight_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_maps_with_few_channels_per_position_are_torchs_own_convolution(unfold_calls):
    torch.manual_seed(0)
    conv, up = GemmConv2d(C, 8, 4, 2, 1), GemmConvTranspose2d(C, 8, 4, 2, 1)
    x = torch.randn(2, C, 8, 8)  # 16 positions out of the conv, 16 into the transposed conv
    assert C < 16 * GEMM_CHANNELS_PER_POSITION
    assert torch.equal(conv(x), _stock(conv)(x))
    assert torch.equal(up(x[:, :, :4, :4]), _stock(up)(x[:, :, :4, :4]))
    narrow = GemmConv2d(8, 8, 4, 2, 1)  # 1 position, but only 8 channels
    assert torch.equal(narrow(x[:, :8, :2, :2]), _stock(narrow)(x[:, :8, :2, :2]))
    assert unfold_calls == []


def test_bf16_autocast_gives_the_dtype_torchs_layer_gives(unfold_calls):
    torch.manual_seed(0)
    for layer, size in ((GemmConv2d(C, 8, 4, 2, 1), 2), (GemmConvTranspose2d(C, 8, 4, 2, 1), 1)):
        x = torch.randn(2, C, size, size)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, ref = layer(x), _stock(layer)(x)
        assert out.dtype == ref.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), ref.float(), rtol=2e-2, atol=2e-2)
    assert len(unfold_calls) == 2


@pytest.mark.parametrize("name", ["unet", "resunet"])
def test_a_generator_matches_its_stock_twin(name, unfold_calls):
    torch.manual_seed(0)
    twin = build_generator(name, 64, width=8).eval()
    # the networks are defined with torch's own layers ...
    assert not any(isinstance(m, (GemmConv2d, GemmConvTranspose2d)) for m in twin.modules())
    G = with_gemm_convs(copy.deepcopy(twin))  # ... and take the GEMM path only when swapped
    assert G.state_dict().keys() == twin.state_dict().keys()
    x = torch.randn(3, 1, 64, 64)
    out = G(x)
    assert unfold_calls  # the bottleneck ran as GEMMs
    torch.testing.assert_close(out, twin(x), rtol=1e-4, atol=1e-5)


def test_a_cells_networks_take_the_gemm_path_on_the_cpu_only():
    """The swap happens in one place, where a cell is built for its device."""
    from bench.config.options import TrainSettings
    from bench.train.loop import build_cell
    from colorbench_datasets import LabSplit
    from losses import LossOptions, parse_losses

    split = LabSplit(torch.zeros(4, 1, 36, 36), torch.zeros(4, 2, 36, 36), torch.zeros(4, 3, 32, 32, dtype=torch.uint8), list("abcd"))
    (combo,) = parse_losses("100*l1+gan")
    cell = build_cell(combo, 0, split, TrainSettings(size=32, width=8, batch_size=2), LossOptions(disc_width=8),
                      torch.device("cpu"), torch.contiguous_format)
    for net in (cell.G, cell.D):
        convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        assert convs and all(isinstance(m, (GemmConv2d, GemmConvTranspose2d)) for m in convs)
