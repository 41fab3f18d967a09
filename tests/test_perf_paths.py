"""The fast paths compute what the plain ones do: packed tokens, and evaluation at any batch size."""
import pytest
import torch

from data_utils.config import DataConfig
from data_utils.load import load_task
from evaluation import evaluate, make_eval_batches
from helpers import tiny_model
from interfaces import LanguageModelInterface
from layers import Packing

LENGTHS = torch.tensor([9, 4, 6, 1])


def padded_tokens(seed: int = 1) -> torch.Tensor:
    tokens = torch.randint(1, 13, (len(LENGTHS), int(LENGTHS.max())),
                           generator=torch.Generator().manual_seed(seed))
    return tokens.masked_fill(torch.arange(tokens.shape[1])[None, :] >= LENGTHS[:, None], 0)


def test_packing_round_trips_the_real_positions():
    packing = Packing.from_lengths(LENGTHS, 9)
    x = torch.randn(4, 9, 3)
    real = torch.arange(9)[None, :] < LENGTHS[:, None]
    assert torch.equal(packing.pack(x), x[real])
    assert torch.equal(packing.unpack(packing.pack(x)), x * real[..., None])


@pytest.mark.parametrize("gated", [False, True])
def test_packed_forward_and_backward_equal_the_padded_ones(gated):
    model = tiny_model(tied_embedding=True, gated_model=gated)  # eval: no dropout, so both paths see the same net
    tokens, real = padded_tokens(), torch.arange(9)[None, :] < LENGTHS[:, None]
    ff_inputs = []
    model.trafo["encoder"].layers[0].linear1.register_forward_hook(
        lambda module, inputs, output: ff_inputs.append(tuple(inputs[0].shape)))
    results = {}
    for pack in (False, None):  # None: the default, which packs on the CPU
        model.zero_grad()
        logits = model(tokens, LENGTHS, pack=pack)
        (logits[real] ** 2).mean().backward()
        results[pack] = logits[real], {n: p.grad.clone() for n, p in model.named_parameters()}
    assert ff_inputs == [(4, 9, 32), (int(LENGTHS.sum()), 32)]  # the packed pass skips padding
    torch.testing.assert_close(results[None][0], results[False][0], atol=1e-5, rtol=0)
    for name, grad in results[False][1].items():
        torch.testing.assert_close(results[None][1][name], grad, atol=1e-5, rtol=1e-5, msg=name)


def test_packed_training_pass_drops_out_and_gives_pads_zero_logits():
    model = tiny_model(tied_embedding=True, dropout=0.3).train()
    tokens = padded_tokens()
    logits = model(tokens, LENGTHS, pack=True)
    assert not torch.equal(logits, model(tokens, LENGTHS, pack=True))
    assert torch.equal(logits[1, 4:], torch.zeros_like(logits[1, 4:]))


def test_evaluation_results_do_not_depend_on_the_batch_size(data_dir):
    task = load_task(DataConfig(dataset="question", data_dir=data_dir), ["test"])
    examples = task.eval["test"][:96]
    interface = LanguageModelInterface(tiny_model(0, len(task.vocab)))
    small, large = (evaluate(interface, make_eval_batches(examples, task.vocab, size), "cpu")
                    for size in (32, 256))
    for field in ("loss", "first_half", "second_half"):
        assert getattr(small, field) == pytest.approx(getattr(large, field), abs=1e-5)
    assert (small.n_targets, small.n_correct, small.per_type, small.rule_counts) == \
        (large.n_targets, large.n_correct, large.per_type, large.rule_counts)
