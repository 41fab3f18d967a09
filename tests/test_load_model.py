"""checkpoint.load_model: the model, vocabulary and configuration of any checkpoint, ready to evaluate."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from checkpoint import load_model, research_state_dict
from config import parse_config
from data_utils.load import load_task
from evaluation import evaluate, make_eval_batches
from helpers import REFERENCE, REFERENCE_CHECKPOINT, RESEARCH_MODEL, batch_of, eval_events, lines, model_flags, train
from transformer_helpers import create_model
from util import HierGenError

TINY = [*model_flags(2, 32, 2), "--dataset", "question", "--seed", "4"]
needs_reference = pytest.mark.skipif(not REFERENCE_CHECKPOINT.exists(),
                                     reason=f"reference material not found at {REFERENCE}")


def first_val_lines(n: int) -> list[str]:
    return lines(REFERENCE / "question.val")[:n]


def expected() -> dict:
    return json.loads((REFERENCE / "tiny_qf_expected.json").read_text())


def test_our_checkpoint_reevaluates_to_the_metrics_logged_when_it_was_saved(data_dir, tmp_path):
    assert train(data_dir, *TINY, "--callback", "--lr", "3e-3", "--num_warmup_steps", "2", "--max_train_steps", "6",
                 "--eval_every", "3", "--save_every", "3", "--save_dir", str(tmp_path), "--save_prefix", "r") == 0
    loaded = load_model(tmp_path / "r" / "checkpoint_3.pth")
    assert loaded.step == 3 and not loaded.model.training
    assert loaded.config.args == json.loads((tmp_path / "r" / "args.json").read_text())
    task = load_task(loaded.config.data, list(loaded.config.train.eval_keys))
    assert loaded.vocab.words == task.vocab.words
    metrics = {}
    for split, examples in task.eval.items():
        result = evaluate(loaded.objective, make_eval_batches(examples, loaded.vocab, 32), "cpu")
        metrics.update(result.metrics(split, callback=True))
    logged = eval_events(tmp_path / "r")[3]
    assert "test_aux" in metrics and len(metrics) > 10
    assert metrics == pytest.approx({k: logged[k] for k in metrics}, rel=1e-6)


@needs_reference
def test_a_research_checkpoint_with_its_args_json_beside_it(tmp_path):
    shutil.copy(REFERENCE_CHECKPOINT, tmp_path / "checkpoint.pth")
    shutil.copy(REFERENCE / "tiny_qf_args.json", tmp_path / "args.json")
    loaded = load_model(tmp_path / "checkpoint.pth")
    assert loaded.vocab.words == expected()["vocab"]
    assert loaded.step == 1000 and loaded.config.model.vec_dim == 128
    with torch.no_grad():
        loss = loaded.objective(batch_of(first_val_lines(16), loaded.vocab)).loss
    assert loss.item() == pytest.approx(expected()["val16_loss"], abs=1e-5)


@needs_reference
def test_a_research_checkpoint_with_flags_and_without_arguments():
    loaded = load_model(REFERENCE_CHECKPOINT, flags=[*RESEARCH_MODEL, "--dataset", "question_qf_disamb"])
    with torch.no_grad():
        loss = loaded.objective(batch_of(first_val_lines(16), loaded.vocab)).loss
    assert loss.item() == pytest.approx(expected()["val16_loss"], abs=1e-5)
    with pytest.raises(HierGenError, match="records no arguments and there is no args.json") as error:
        load_model(REFERENCE_CHECKPOINT)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("research_names", [False, True])
def test_a_raw_pickle_state_dict(tmp_path, research_names):
    cfg = parse_config(TINY, environ={})
    torch.manual_seed(0)
    model = create_model(cfg.model, 69)
    state = research_state_dict(model) if research_names else model.state_dict()
    torch.save(state, tmp_path / "model.pickle")
    loaded = load_model(tmp_path / "model.pickle", flags=TINY)
    assert loaded.step is None
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)


@pytest.mark.parametrize("content, message", [
    ("{not json", "args.json is not valid JSON"),
    ("[1, 2]", "does not hold an object of arguments"),
    ('{"vec_dim": 32, "no_such_flag": 1}', "unknown flags --no_such_flag"),
    ('{"vec_dim": 30, "n_heads": 4}', "vec_dim 30 is not divisible by n_heads 4"),
])
def test_bad_arguments_beside_a_checkpoint_are_one_line_errors(tmp_path, content, message):
    torch.save({"x": torch.zeros(1)}, tmp_path / "model.pickle")
    (tmp_path / "args.json").write_text(content)
    with pytest.raises(HierGenError, match=message) as error:
        load_model(tmp_path / "model.pickle")
    assert "\n" not in str(error.value)


def test_a_checkpoint_of_another_model_does_not_fit(tmp_path):
    cfg = parse_config(TINY, environ={})
    torch.save(create_model(cfg.model, 69).state_dict(), tmp_path / "model.pickle")
    with pytest.raises(HierGenError, match="does not fit this model"):
        load_model(tmp_path / "model.pickle", flags=[*TINY, "--vec_dim", "64"])
