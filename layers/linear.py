"""Linear maps whose CPU matrix products run in oneDNN.

PyTorch's CPU matmul calls MKL, which on AMD processors takes its AVX2 code path even where the
processor has AVX-512; oneDNN dispatches on the instruction set alone. On a 2-core AMD EPYC with
AVX-512 its fp32 GEMM is about 1.3× faster at 2048³ (bench/train_step.py prints both rates); a
linear layer of the paper configuration runs its forward and backward 5–20% faster, and a
training step about 5%. Where MKL uses AVX-512 itself (Intel) the two should run level.
"""
from __future__ import annotations

import platform

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

# oneDNN's fp32 linear, the kernel torch.compile's CPU backend calls for frozen weights.
_onednn_linear = torch.ops.mkldnn._linear_pointwise
ONEDNN_AVAILABLE = (torch.backends.mkldnn.is_available()
                    and platform.machine().lower() in ("x86_64", "amd64"))
# Each oneDNN call costs ~20 µs more than MKL's, and autograd Function ~50 µs more than F.linear:
# products of up to this many multiply-adds (rows·in·out) are faster in F.linear. The paper
# configuration's smallest, 190 tokens × 512 × 512, gains 6%; a 128-wide model's would lose 8%.
SMALL_PRODUCT_MACS = 2 ** 25


def onednn_matmul(x: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    """`x @ weight.T + bias` in oneDNN (no autograd); x may be strided, weight any [out, in]."""
    return _onednn_linear(x, weight, bias, "none", [], "")


def _runs_in_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    # torch.compile and vmap (the multi-seed step) bring their own matmul handling; compile is
    # asked first, so that tracing reads no further.
    return (ONEDNN_AVAILABLE and not torch.compiler.is_compiling()
            and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and x.numel() * weight.shape[0] > SMALL_PRODUCT_MACS
            and not torch.is_autocast_enabled("cpu")
            and not torch._C._are_functorch_transforms_active())


def linear(x: torch.Tensor, weight: torch.Tensor,
           bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`, with the CPU fp32 products (forward and backward) in oneDNN."""
    if not _runs_in_onednn(x, weight):
        return F.linear(x, weight, bias)
    if x.dim() != 2:
        # The autograd Function sees 2-d tensors: a view made inside it could not be changed in
        # place (the feed-forward's ReLU is), one made out here can. Packed tokens are 2-d
        # already, and their outputs are no views: changing a view in place costs a copy in the
        # backward pass.
        rows = linear(x.reshape(-1, x.shape[-1]), weight, bias)
        return rows.view(*x.shape[:-1], weight.shape[0])
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in (x, weight, bias)):
        return _OneDNNLinear.apply(x, weight, bias)
    return onednn_matmul(x, weight, bias)


class _OneDNNLinear(torch.autograd.Function):
    """y = x Wᵀ + b on x: [rows, in]; backward: dx = dy W, dW = dyᵀ x, db = Σ dy, each product
    in oneDNN."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return onednn_matmul(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = onednn_matmul(grad, weight.t())
        if ctx.needs_input_grad[1]:
            grad_weight = onednn_matmul(grad.t(), x.t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_x, grad_weight, grad_bias


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, init and state-dict keys) computed by `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
