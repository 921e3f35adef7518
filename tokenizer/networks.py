"""The 1-D convolutional encoder and decoder of the motion VQ-VAE (T2M-GPT's layout, Zhang et al. 2023).

Encoder: conv(k3) -> act -> [strided conv(k=2s, stride s) -> residual stack] x down_t -> conv(k3).
Decoder: conv(k3) -> act -> [residual stack -> nearest upsample x s -> conv(k3)] x down_t
         -> conv(k3) -> act -> conv(k3).
A residual block is act -> dilated conv(k3) -> act -> conv(k1), plus its input; a stack has `depth`
blocks with dilations growth**i, largest first.

Every module takes (x, mask): x (B, C, T) and mask (B, 1, T) float, 1 on valid positions. Activations
are multiplied by the mask after every convolution, so the padded tail of a batch item holds zeros
exactly as the convolution's own zero padding would: an item encodes the same in a padded batch as
alone. Valid lengths must be multiples of the downsampling factor (the caller pads).
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration import VQVAEConfig


def get_activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}[name]()


class ResidualBlock(nn.Module):
    def __init__(self, width: int, dilation: int, activation: str):
        super().__init__()
        self.act = get_activation(activation)
        self.conv1 = nn.Conv1d(width, width, kernel_size=3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(width, width, kernel_size=1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(x)) * mask  # (B, C, T)
        h = self.conv2(self.act(h)) * mask
        return x + h


class ResidualStack(nn.Module):
    def __init__(self, width: int, depth: int, growth: int, activation: str):
        super().__init__()
        dilations = [growth**i for i in range(depth)][::-1]  # e.g. 9, 3, 1
        self.blocks = nn.ModuleList(ResidualBlock(width, d, activation) for d in dilations)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return x


class Downsample(nn.Module):
    """Strided conv, kernel 2s, padding ceil(s/2): T -> T / s for T a multiple of s."""

    def __init__(self, width: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(width, width, kernel_size=2 * stride, stride=stride, padding=(stride + 1) // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = mask[..., :: self.stride]  # (B, 1, T/s)
        return self.conv(x) * mask, mask


class Upsample(nn.Module):
    """Nearest upsampling by s, then conv(k3): T -> T * s."""

    def __init__(self, width: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(width, width, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = mask.repeat_interleave(self.stride, dim=-1)  # (B, 1, T*s)
        x = x.repeat_interleave(self.stride, dim=-1)
        return self.conv(x) * mask, mask


class MotionEncoder(nn.Module):
    """(B, nfeats, T) -> (B, code_dim, T / stride_t**down_t)."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        c = config
        self.conv_in = nn.Conv1d(c.nfeats, c.width, kernel_size=3, padding=1)
        self.act = get_activation(c.activation)
        self.downs = nn.ModuleList(Downsample(c.width, c.stride_t) for _ in range(c.down_t))
        self.stacks = nn.ModuleList(
            ResidualStack(c.width, c.depth, c.dilation_growth_rate, c.activation) for _ in range(c.down_t)
        )
        self.conv_out = nn.Conv1d(c.width, c.code_dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.conv_in(x * mask)) * mask  # (B, width, T)
        for down, stack in zip(self.downs, self.stacks, strict=True):
            h, mask = down(h, mask)  # (B, width, T / s)
            h = stack(h, mask)
        return self.conv_out(h) * mask, mask  # (B, code_dim, N), (B, 1, N)


class MotionDecoder(nn.Module):
    """(B, code_dim, N) -> (B, nfeats, N * stride_t**down_t)."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        c = config
        self.conv_in = nn.Conv1d(c.code_dim, c.width, kernel_size=3, padding=1)
        self.act = get_activation(c.activation)
        self.stacks = nn.ModuleList(
            ResidualStack(c.width, c.depth, c.dilation_growth_rate, c.activation) for _ in range(c.down_t)
        )
        self.ups = nn.ModuleList(Upsample(c.width, c.stride_t) for _ in range(c.down_t))
        self.conv_mid = nn.Conv1d(c.width, c.width, kernel_size=3, padding=1)
        self.conv_out = nn.Conv1d(c.width, c.nfeats, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.conv_in(z * mask)) * mask  # (B, width, N)
        for stack, up in zip(self.stacks, self.ups, strict=True):
            h = stack(h, mask)
            h, mask = up(h, mask)  # (B, width, N * s)
        h = self.act(self.conv_mid(h)) * mask
        return self.conv_out(h) * mask, mask  # (B, nfeats, T), (B, 1, T)
