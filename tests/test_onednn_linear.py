"""`layers.linear.linear` computes F.linear, forward and backward, while running its CPU fp32
products in oneDNN; where oneDNN does not apply (vmap, autocast, other dtypes) it is F.linear."""
import pytest
import torch
import torch.nn.functional as F

import layers.linear as onednn
from layers import Linear

pytestmark = pytest.mark.skipif(not onednn.ONEDNN_AVAILABLE,
                                reason="this PyTorch build or processor has no oneDNN linear")


@pytest.fixture
def onednn_calls(monkeypatch):
    """Counts the products that ran in oneDNN; products of any size qualify."""
    calls = []
    monkeypatch.setattr(onednn, "SMALL_PRODUCT_MACS", 0)

    def counted(x, weight, bias=None):
        calls.append(x.shape)
        return onednn._onednn_linear(x, weight, bias, "none", [], "")
    monkeypatch.setattr(onednn, "onednn_matmul", counted)
    return calls


def inputs(shape, out, bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, requires_grad=True)
    w = torch.randn(out, shape[-1], generator=g, requires_grad=True)
    b = torch.randn(out, generator=g, requires_grad=True) if bias else None
    return x, w, b


@pytest.mark.parametrize("shape", [(13, 24), (3, 5, 24)])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_gradients_equal_f_linear(onednn_calls, shape, bias):
    x, w, b = inputs(shape, 40, bias)
    upstream = torch.randn(*shape[:-1], 40, generator=torch.Generator().manual_seed(1))
    grads = []
    for fn in (onednn.linear, F.linear):
        y = fn(x, w, b)
        leaves = [t for t in (x, w, b) if t is not None]
        grads.append((y, *torch.autograd.grad(y, leaves, upstream)))
    assert len(onednn_calls) == 3  # forward, dx, dW
    for ours, plain in zip(*grads):
        assert ours.shape == plain.shape
        torch.testing.assert_close(ours, plain, rtol=1e-5, atol=1e-5)


def test_only_the_needed_gradients_are_computed(onednn_calls):
    x, w, b = inputs((6, 8), 4, bias=True)
    x.requires_grad_(False)
    onednn.linear(x, w, b).sum().backward()
    assert len(onednn_calls) == 2  # forward and dW: no dx for an input without grad
    torch.testing.assert_close(b.grad, torch.full((4,), 6.0))


@pytest.mark.parametrize("shape", [(14, 16), (2, 7, 16)])
def test_output_can_be_changed_in_place_as_the_feed_forward_relu_does(onednn_calls, shape):
    x, w, b = inputs(shape, 32, bias=True)
    grads = []
    for fn in (onednn.linear, F.linear):
        y = F.relu(fn(x, w, b), inplace=True)
        grads.append(torch.autograd.grad(y.square().sum(), (x, w, b)))
    for ours, plain in zip(*grads):
        torch.testing.assert_close(ours, plain, rtol=1e-5, atol=1e-5)


def test_inference_runs_in_onednn_without_autograd(onednn_calls):
    layer = Linear(16, 8)
    x = torch.randn(5, 16)
    with torch.inference_mode():
        y = layer(x)
    assert len(onednn_calls) == 1
    torch.testing.assert_close(y, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


def test_vmap_autocast_and_double_fall_back_to_f_linear(onednn_calls):
    x, w, b = inputs((3, 4, 8), 6, bias=True)
    stacked = torch.func.vmap(onednn.linear, in_dims=(0, None, None))(x, w, b)
    torch.testing.assert_close(stacked, F.linear(x, w, b))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert onednn.linear(x, w, b).dtype == torch.bfloat16
    assert onednn.linear(x.double(), w.double(), b.double()).dtype == torch.float64
    assert onednn_calls == []


def test_small_products_stay_in_f_linear(monkeypatch):
    calls = []
    monkeypatch.setattr(onednn, "onednn_matmul", lambda *args: calls.append(args) or None)
    onednn.linear(torch.randn(64, 128), torch.randn(512, 128))  # 2^22 multiply-adds
    assert calls == []
    onednn.linear(torch.randn(256, 512), torch.randn(512, 512))  # 2^26
    assert len(calls) == 1


@pytest.mark.parametrize("shape", [(0, 8), (3, 0, 8)])
def test_empty_inputs_fall_back_to_f_linear(onednn_calls, shape):
    x, w, b = inputs(shape, 4, bias=True)
    y = onednn.linear(x, w, b)
    y.sum().backward()
    assert y.shape == (*shape[:-1], 4) and onednn_calls == []
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros_like(b))


def test_linear_module_keeps_nn_linear_state_dict():
    torch.manual_seed(0)
    ours = Linear(8, 4)
    torch.manual_seed(0)
    plain = torch.nn.Linear(8, 4)
    assert ours.state_dict().keys() == plain.state_dict().keys()
    for key in plain.state_dict():
        assert torch.equal(ours.state_dict()[key], plain.state_dict()[key])
