"""Convolutions that run as one matrix product over the batch when the map is tiny.

On a CPU, oneDNN's convolution kernels are built for maps of many positions. Around a
U-Net's bottleneck, where 512-channel maps are 4x4 to 1x1, they ran 1.3-7x slower
(forward + backward) than the same convolution written as ``unfold`` + one matrix product
over the whole batch (benchmarks/README.md, "Tiny maps"). These drop-in subclasses take
that path on the CPU where a map has few positions for its channels -- at least
``GEMM_CHANNELS_PER_POSITION`` input channels per position of a convolution's output or a
transposed convolution's input -- and are plain ``nn.Conv2d`` / ``nn.ConvTranspose2d``
everywhere else: the same parameters and state_dict, the same math (only the order of the
sums differs), and cuDNN untouched on a GPU. The networks in models/networks.py are
defined with torch's layers; ``with_gemm_convs`` swaps them in where a cell is built.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# Measured per layer (benchmarks/gemm_conv.py; batch 32 and 16, 64-1024 channels, 1x1-8x8
# maps): well above this the GEMM won 1.3-7x, at it the two were even (0.9-1.15x), below it
# oneDNN won but for two modest GEMM wins (1.2-1.3x) left to it.
GEMM_CHANNELS_PER_POSITION = 64


def _gemm_applies(layer: nn.Module, x: torch.Tensor, positions: int) -> bool:
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and layer.in_channels >= GEMM_CHANNELS_PER_POSITION * positions
        and layer.groups == 1
        and layer.dilation == (1, 1)
        and layer.padding_mode == "zeros"
        and not isinstance(layer.padding, str)
    )


def _like(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out`` in ``x``'s memory format, as torch's convolutions return it."""
    channels_last = x.stride(1) < x.stride(-1)
    return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class GemmConv2d(nn.Conv2d):
    """``nn.Conv2d``; on the CPU, a map with few positions for its channels is one GEMM."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_hw = [
            (x.shape[-2 + d] + 2 * self.padding[d] - self.kernel_size[d]) // self.stride[d] + 1 for d in (0, 1)
        ]
        if not _gemm_applies(self, x, out_hw[0] * out_hw[1]):
            return super().forward(x)
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # N, C_in*k*k, L
        out = F.linear(cols.transpose(1, 2), self.weight.flatten(1), self.bias)  # N, L, C_out
        return _like(out.transpose(1, 2).reshape(x.shape[0], self.out_channels, *out_hw), x)


class GemmConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d``; on the CPU, a small input map is one GEMM and a ``fold``."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None or self.output_padding != (0, 0) or not _gemm_applies(self, x, x.shape[-2] * x.shape[-1]):
            return super().forward(x, output_size)
        out_hw = [(x.shape[-2 + d] - 1) * self.stride[d] - 2 * self.padding[d] + self.kernel_size[d] for d in (0, 1)]
        cols = F.linear(x.flatten(2).transpose(1, 2), self.weight.flatten(1).t())  # N, L, C_out*k*k
        out = F.fold(cols.transpose(1, 2), out_hw, self.kernel_size, padding=self.padding, stride=self.stride)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype).view(1, -1, 1, 1)  # autocast: keep the product's dtype
        return _like(out, x)


def _swap_classes(net: nn.Module, classes: dict[type, type]) -> nn.Module:
    # Only the class changes: parameters, buffers, hooks and state_dict keys stay.
    for module in net.modules():
        if type(module) in classes:
            module.__class__ = classes[type(module)]
    return net


def with_gemm_convs(net: nn.Module) -> nn.Module:
    """``net``, in place, with its torch convolutions as these (the same parameters), so its
    tiny-map layers run as GEMMs on a CPU. The networks are defined with torch's layers;
    ``bench.train.loop`` applies this where a cell's generator and discriminator are built."""
    return _swap_classes(net, {nn.Conv2d: GemmConv2d, nn.ConvTranspose2d: GemmConvTranspose2d})


def with_torch_layers(net: nn.Module) -> nn.Module:
    """The inverse of ``with_gemm_convs``: torch's own convolution classes again (the same
    parameters), the network as torch alone would run it, e.g. to compare against."""
    return _swap_classes(net, {GemmConv2d: nn.Conv2d, GemmConvTranspose2d: nn.ConvTranspose2d})
