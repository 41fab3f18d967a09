"""Saving and loading weights in the research layout, and one-line errors for bad files."""
import functools

import pytest
import torch

from checkpoint import load_checkpoint_file, load_model_weights, research_state_dict
from helpers import Payload, tiny_model
from util import HierGenError

TOKENS = torch.tensor([[12, 3, 5, 7, 1, 2], [12, 4, 4, 9, 0, 0]])
LENGTHS = torch.tensor([6, 4])
tiny_lm = functools.partial(tiny_model, tied_embedding=True)


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS, LENGTHS)


def test_our_checkpoint_round_trips_in_the_research_layout(tmp_path):
    model = tiny_lm(seed=0)
    optimizer = torch.optim.AdamW(model.parameters())
    path = tmp_path / "checkpoint_0.pth"
    torch.save({"model_state_dict": research_state_dict(model),
                "optimizer_state_dict": optimizer.state_dict(),
                "scheduler_state_dict": {"last_epoch": 0}}, path)
    assert all(k.startswith("model.") for k in load_checkpoint_file(path)["model_state_dict"])
    other = tiny_lm(seed=1)
    assert not torch.equal(logits(model), logits(other))
    load_model_weights(other, path)
    assert torch.equal(logits(model), logits(other))


def test_research_checkpoint_with_decoder_keys_and_raw_pickle_load(tmp_path):
    model = tiny_lm(seed=0)
    state = research_state_dict(model)
    state["model.trafo.decoder.layers.0.norm3.weight"] = torch.ones(32)
    fresh = tiny_lm(seed=1)
    load_model_weights(fresh, {"model_state_dict": state, "scheduler_state_dict": {}})
    assert torch.equal(logits(model), logits(fresh))
    torch.save(model.state_dict(), tmp_path / "model.pickle")  # Murty et al.: no `model.` prefix
    load_model_weights(fresh := tiny_lm(seed=1), str(tmp_path / "model.pickle"))
    assert torch.equal(logits(model), logits(fresh))


def test_untied_weights_round_trip(tmp_path):
    model = tiny_lm(seed=0, tied_embedding=False)
    torch.save({"model_state_dict": research_state_dict(model)}, tmp_path / "c.pth")
    load_model_weights(fresh := tiny_lm(seed=1, tied_embedding=False), tmp_path / "c.pth")
    assert torch.equal(logits(model), logits(fresh))


def assert_one_line_error(source, model=None, *fragments):
    with pytest.raises(HierGenError) as info:
        load_model_weights(model or tiny_lm(), source)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_unreadable_files_are_user_errors(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"model_state_dict": research_state_dict(tiny_lm())}, good)
    truncated, noise = tmp_path / "truncated.pth", tmp_path / "noise.pth"
    listing = tmp_path / "list.pth"
    truncated.write_bytes(good.read_bytes()[:2000])
    noise.write_bytes(bytes(range(256)) * 8)
    torch.save([1, 2, 3], listing)
    for path in (tmp_path / "missing.pth", tmp_path, truncated, noise, listing):
        assert_one_line_error(path, None, str(path))
    assert_one_line_error(str(tmp_path / "missing.pth"), None, "does not exist")


def test_pickled_code_is_refused_without_running_it(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pth"
    torch.save({"model_state_dict": Payload(marker)}, path)
    message = assert_one_line_error(path, None, str(path))
    assert "pickled code" in message
    assert not marker.exists()


def test_checkpoints_of_another_model_are_user_errors(tmp_path):
    def saved(model, name):
        torch.save({"model_state_dict": research_state_dict(model)}, tmp_path / name)
        return tmp_path / name

    assert_one_line_error(saved(tiny_lm(n_words=101), "vocab.pth"), None,
                          "has 103 token rows, this vocabulary needs 13")
    assert_one_line_error(saved(tiny_lm(), "tied.pth"), tiny_lm(tied_embedding=False),
                          "missing keys output_map.weight")
    assert_one_line_error(saved(tiny_lm(encoder_n_layers=3), "deep.pth"), None,
                          "unexpected keys trafo.encoder.layers.2.")
    assert_one_line_error(saved(tiny_lm(vec_dim=64), "wide.pth"), None,
                          "has shape [1, 5000, 64], the model needs [1, 5000, 32]")
    assert_one_line_error({"model_state_dict": {"x": 1}}, None, "no model state dict")
