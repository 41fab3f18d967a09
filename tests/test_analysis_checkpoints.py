"""`python -m analysis checkpoints` and `internals`: re-evaluation that reproduces the logged metrics,
greedy full-sequence accuracy, weight norms and attention entropies, research runs, bad input."""
from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn

from analysis.__main__ import main as analysis
from analysis.internals import attention_entropy, weight_norm
from checkpoint import load_model
from data_utils.lines import read_text_lines
from decoding import decode_batch, exact_matches, full_sequence_accuracy, greedy_decode
from evaluation import make_eval_batches
from helpers import (BATCH_LINES, QF, REFERENCE, REFERENCE_CHECKPOINT, assert_one_line, assert_opens, eval_events, example,
                     model_flags, read_csv, tiny_model, train, vocab_of, write_files)
from layers.attention import MultiHeadAttention
from models.weight_statistics import NAMES

needs_reference = pytest.mark.skipif(not REFERENCE_CHECKPOINT.exists(),
                                     reason=f"reference material not found at {REFERENCE}")
TI_SPLITS = [f"{split}_{kind}" for split in ("val", "test") for kind in ("rc", "prep", "rc_sbj", "rc_obj")]
INTERNALS_COLUMNS = ["step", "weight_norm", "attn_entropy_layer1", "attn_entropy_layer2", "attn_entropy_mean", *NAMES]


@pytest.fixture(scope="module")
def small_data(data_dir, tmp_path_factory) -> str:
    """The first lines of every generated QF and TI file: evaluations take a fraction of a second."""
    out = tmp_path_factory.mktemp("small_data")
    for folder, task, names, n in [("question_formation_data", "question", ["val", "test", "test.type"], 60),
                                   ("tense_inflection_data", "tense", ["val", "test", *TI_SPLITS], 30)]:
        files = {f"{task}.{name}": read_text_lines(os.path.join(data_dir, folder, f"{task}.{name}"))[:n]
                 for name in names}
        files[f"{task}.train"] = read_text_lines(os.path.join(data_dir, folder, f"{task}.train"))[:300]
        write_files(out / folder, files)
    return str(out)


def trained(data: str, out, prefix: str, *flags: str) -> str:
    """The run directory of a tiny run trained on `data` with `flags` (evaluated and saved as they say)."""
    assert train(data, "--callback", "--lr", "3e-3", "--num_warmup_steps", "2", *flags, "--save_dir", str(out),
                 "--save_prefix", prefix) == 0
    return os.path.join(out, prefix)


@pytest.fixture(scope="module")
def qf_run(small_data, tmp_path_factory) -> str:
    """A two-layer QF LM saved and evaluated on val and test at steps 0, 3 and 6."""
    return trained(small_data, tmp_path_factory.mktemp("qf"), "qf", *model_flags(2, 32, 2), "--dataset", "question",
                   "--eval_keys", "val,test", "--max_train_steps", "6", "--eval_every", "3", "--save_every", "3")


@pytest.fixture(scope="module")
def ti_run(small_data, tmp_path_factory) -> str:
    """A one-layer TI LM saved and evaluated on val and val_rc at steps 0 and 2."""
    return trained(small_data, tmp_path_factory.mktemp("ti"), "ti", *model_flags(1, 16, 2), "--dataset", "tense",
                   "--eval_keys", "val,val_rc", "--max_train_steps", "2", "--eval_every", "2", "--save_every", "2")


def run_analysis(*argv: str) -> int:
    return analysis([str(a) for a in argv])


def assert_reproduces_logged(table, run_dir: str) -> None:
    """Every metric logged at each evaluation (but `best/`, the history's minimum, and the weight
    statistics, which internals.csv holds) equals the table's."""
    logged = eval_events(run_dir)
    assert sorted(table["step"]) == sorted(logged)
    for step, event in logged.items():
        row = table.set_index("step").loc[step]
        names = [k for k in event if k != "iteration" and not k.startswith(("best/", "weights/"))]
        assert len(names) >= 4
        assert {k: row[k] for k in names} == pytest.approx({k: event[k] for k in names}, rel=1e-6, abs=1e-9)


# ------------------------------------------------------------------------------------------ checkpoints


def test_each_checkpoint_reevaluates_to_its_logged_metrics(qf_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_analysis("checkpoints", qf_run, "--out", out) == 0
    assert sorted(os.listdir(out)) == ["checkpoints.csv", "checkpoints.png"]
    assert (out / "checkpoints.png").read_bytes()[:4] == b"\x89PNG"
    table = read_csv(out / "checkpoints.csv")
    assert table.columns[0] == "step" and table["step"].tolist() == [0, 3, 6]
    assert_reproduces_logged(table, qf_run)
    assert {"test_hierarchical", "test_linear", "val_full_seq", "test_full_seq"} <= set(table.columns)
    assert table[["val_full_seq", "test_full_seq"]].stack().between(0, 1).all()
    summary = capsys.readouterr().out
    assert "test_full_seq" in summary and "wrote checkpoints.csv" in summary


@pytest.mark.parametrize("family", [["--not_lm"], ["--mode", "enc"]], ids=["seq2seq", "classifier"])
def test_other_model_families_reevaluate_to_their_logged_metrics(small_data, tmp_path, family):
    run = trained(small_data, tmp_path, "r", *model_flags(1, 16, 2), *family, "--dataset", "question",
                  "--eval_keys", "val", "--max_train_steps", "2", "--eval_every", "2", "--save_every", "2")
    assert run_analysis("checkpoints", run, "--splits", "val") == 0
    table = read_csv(os.path.join(run, "analysis", "checkpoints.csv"))
    assert_reproduces_logged(table, run)
    # The classifier predicts one token: it has no output sentence to decode.
    assert ("val_full_seq" in table) == (family == ["--not_lm"])


def test_tense_sub_splits(ti_run, tmp_path):
    out = tmp_path / "out"
    assert run_analysis("checkpoints", ti_run, "--splits", "val,val_rc,test_prep", "--out", out) == 0
    table = read_csv(out / "checkpoints.csv")
    assert_reproduces_logged(table, ti_run)  # val and val_rc
    assert {"val_rc_full_seq", "test_prep_aux", "test_prep_full_seq", "curr-test_prep-ppl",
            "test_prep_agree_subject", "test_prep_agree_recent"} <= set(table.columns)


# ------------------------------------------------------------------------------ full-sequence accuracy

EOS = 9


def scripted(scripts: list[list[int]], prompt_lengths: list[int], seen: list):
    """next_logits of a model that writes scripts[row] after its prompt, one token per call; it
    records the rows it is called for and checks that it is shown its own output so far."""
    def next_logits(rows, tokens, lengths):
        seen.append(rows.tolist())
        logits = torch.zeros(len(rows), EOS + 1)
        for i, (row, length) in enumerate(zip(rows.tolist(), lengths.tolist())):
            start = prompt_lengths[row]
            assert tokens[i, start:length].tolist() == scripts[row][:length - start]
            logits[i, scripts[row][length - start]] = 1.0
        return logits
    return next_logits


def test_greedy_decoding_stops_each_line_at_its_eos_and_stops_at_max_length_without_one():
    scripts = [[1, 2, 3, EOS], [1, EOS], [4] * 10]  # the last never emits EOS
    seen = []
    out = greedy_decode(scripted(scripts, [2, 2, 2], seen), torch.full((3, 2), 7), torch.tensor([2, 2, 2]), EOS,
                        max_new=6)
    assert out.tolist() == [[1, 2, 3, EOS, -1, -1], [1, EOS, -1, -1, -1, -1], [4, 4, 4, 4, 4, 4]]
    assert seen == [[0, 1, 2], [0, 1, 2], [0, 2], [0, 2], [2], [2]]  # a line that ended is not run again


def test_greedy_decoding_ends_when_every_line_has_emitted_eos():
    seen = []
    prompts = torch.tensor([[7, 8, 8], [7, 8, 0]])  # the second prompt is shorter (padded)
    out = greedy_decode(scripted([[1, EOS], [2, 3, EOS]], [3, 2], seen), prompts, torch.tensor([3, 2]), EOS,
                        max_new=50)
    assert out[:, :3].tolist() == [[1, EOS, -1], [2, 3, EOS]] and (out[:, 3:] == -1).all()
    assert len(seen) == 3


def test_exact_match_needs_every_word_and_the_eos_right_there():
    gold = torch.tensor([[1, 2, 3, EOS]] * 5 + [[5, EOS, -1, -1]])
    gold_lengths = torch.tensor([4] * 5 + [2])
    decoded = torch.tensor([[1, 2, 3, EOS, -1, -1],   # right
                            [1, 2, EOS, -1, -1, -1],  # a word short
                            [1, 2, 3, 3, EOS, -1],    # a word too many
                            [1, 5, 3, EOS, -1, -1],   # a wrong word
                            [1, 2, 3, 3, 3, 3],       # never ends
                            [5, EOS, -1, -1, -1, -1]])  # right, shorter gold
    assert exact_matches(decoded, gold, gold_lengths).tolist() == [True, False, False, False, False, True]
    assert not exact_matches(decoded[:, :3], gold, gold_lengths)[0]  # cut off before its EOS


class CopyingLM(nn.Module):
    """After the marker, writes the input out again word for word, then EOS (with `endless`, the
    input over and over without EOS): right on QF declaratives, wrong on questions."""

    def __init__(self, vocab, endless: bool = False):
        super().__init__()
        self.vocab, self.endless = vocab, endless
        self.markers = torch.tensor(vocab.ids(["decl", "quest"]))

    def forward(self, tokens, lengths):
        logits = torch.zeros(*tokens.shape, len(self.vocab) + 2)
        for b, length in enumerate(lengths.tolist()):
            marker = int(torch.isin(tokens[b], self.markers).nonzero()[0])
            written, n_input = length - 1 - marker, marker - 1
            if self.endless:
                word = tokens[b, 1 + written % n_input]
            else:
                word = tokens[b, 1 + written] if written < n_input else self.vocab.eos
            logits[b, length - 1, word] = 1.0
        return logits


@pytest.mark.parametrize("endless", [False, True])
def test_full_sequence_accuracy_counts_the_lines_decoded_exactly(endless):
    vocab = vocab_of(QF)
    batches = make_eval_batches([example(line) for line in QF], vocab, 3)
    declaratives = sum(line.split("\t")[0].endswith("decl") for line in QF) / len(QF)
    accuracy = full_sequence_accuracy(CopyingLM(vocab, endless), "lm", batches, vocab.eos, "cpu")
    assert accuracy == (0.0 if endless else declaratives) and declaratives == 0.5


@pytest.mark.parametrize("family", ["lm", "enc_dec"])
def test_greedy_decode_is_what_the_model_predicts_from_its_own_output(family):
    """Fed back teacher-forced, a greedy output gives its own tokens as the argmax at every step."""
    vocab = vocab_of(BATCH_LINES)
    model = tiny_model(n_words=len(vocab), **({"not_lm": True} if family == "enc_dec" else {}))
    (batch,) = make_eval_batches([example(line) for line in BATCH_LINES], vocab, len(BATCH_LINES))
    decoded = decode_batch(model, family, batch, vocab.eos, 12)
    assert (decoded[:, 0] >= 0).all()
    for b in range(len(BATCH_LINES)):
        out = decoded[b][decoded[b] >= 0]
        prompt_length = int(batch.prefix_len[b]) + 2
        with torch.no_grad():
            if family == "lm":
                tokens = torch.cat([batch.inputs[b, :prompt_length], out[:-1]])[None]
                predicted = model(tokens)[0, prompt_length - 1:].argmax(-1)
            else:
                source = batch.inputs[b, 1:prompt_length][None]
                target_in = torch.cat([batch.inputs[b, :1], out[:-1]])[None]
                predicted = model(source, torch.tensor([prompt_length - 1]), target_in,
                                  torch.tensor([len(out)]))[0].argmax(-1)
        assert predicted.tolist() == out.tolist()


# ------------------------------------------------------------------------------------------- internals


def test_internals_of_a_run(qf_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_analysis("internals", qf_run, "--sentences", "40", "--out", out) == 0
    assert sorted(os.listdir(out)) == ["internals.csv", "internals.png"]
    table = read_csv(out / "internals.csv")
    assert list(table.columns) == INTERNALS_COLUMNS and table["step"].tolist() == [0, 3, 6]
    for step, norm in zip(table["step"], table["weight_norm"]):
        model = load_model(os.path.join(qf_run, f"checkpoint_{step}.pth")).model
        expected = torch.linalg.vector_norm(nn.utils.parameters_to_vector(model.parameters())).item()
        assert norm == pytest.approx(expected, rel=1e-6) and weight_norm(model) == pytest.approx(expected, rel=1e-6)
    layers = table[["attn_entropy_layer1", "attn_entropy_layer2"]]
    assert np.allclose(layers.mean(axis=1), table["attn_entropy_mean"])
    logged = eval_events(qf_run)  # the weight statistics training logged at the same steps
    for row in table.itertuples(index=False):
        assert dict(zip(NAMES, row[-len(NAMES):])) == pytest.approx({n: logged[row.step][n] for n in NAMES},
                                                                    rel=1e-6, abs=1e-12)
    assert ((layers > 0.1) & (layers < math.log(40))).all().all()
    assert "attn_entropy_mean" in capsys.readouterr().out


def mean_log(n: int) -> float:
    """Mean entropy of the n query positions of a causal sequence under uniform attention."""
    return float(np.mean(np.log(np.arange(1, n + 1))))


@pytest.mark.parametrize("family", ["lm", "enc", "enc_dec"])
def test_uniform_attention_has_the_entropy_of_a_uniform_choice_among_the_allowed_keys(family):
    """With the query projections zeroed, every query weighs its allowed keys alike: entropy log k."""
    vocab = vocab_of(BATCH_LINES)
    model = tiny_model(n_words=len(vocab), **{"lm": {}, "enc": {"mode": "enc"}, "enc_dec": {"not_lm": True}}[family])
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            nn.init.zeros_(module.data_to_q.weight)
    examples = [example(line) for line in BATCH_LINES]
    entropy = attention_entropy(model, family, make_eval_batches(examples, vocab, 4), "cpu")
    # Per sentence: the LM reads [SOS] input marker output (causal); the classifier [SOS] input
    # marker (both ways); seq2seq encodes input marker (both ways), decodes [SOS] output (causal).
    lm = np.mean([mean_log(len(e.words) + 1) for e in examples])
    source = np.mean([math.log(e.prefix_len + 2 - (family == "enc_dec")) for e in examples])
    target = np.mean([mean_log(len(e.output) + 1) for e in examples])
    expected = {"lm": [lm, lm], "enc": [source, source], "enc_dec": [source, source, target, target]}[family]
    assert entropy == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------------- research runs


def research_copy(run: str, path) -> str:
    """`run` as the research code would have left it: args.json without a data folder, checkpoints
    holding only the research keys (step 3) or a raw state dict (step 6, .pickle)."""
    os.makedirs(path)
    args = json.loads(open(os.path.join(run, "args.json")).read())
    del args["data_dir"]
    (path / "args.json").write_text(json.dumps(args))
    ours = torch.load(os.path.join(run, "checkpoint_3.pth"), weights_only=True)
    torch.save({k: ours[k] for k in ("model_state_dict", "scheduler_state_dict")}, path / "checkpoint_3.pth")
    torch.save(torch.load(os.path.join(run, "checkpoint_6.pth"), weights_only=True)["model_state_dict"],
               path / "checkpoint_6.pickle")
    return str(path)


def test_a_research_run_directory_gives_what_its_weights_give(qf_run, small_data, tmp_path):
    run = research_copy(qf_run, tmp_path / "research")
    for command in ("checkpoints", "internals"):
        assert run_analysis(command, qf_run, "--out", tmp_path / "ours") == 0
        assert run_analysis(command, run, "--data_dir", small_data) == 0
        ours = read_csv(tmp_path / "ours" / f"{command}.csv")
        research = read_csv(os.path.join(run, "analysis", f"{command}.csv"))
        assert research["step"].tolist() == [3, 6]
        assert list(research.columns) == list(ours.columns)
        assert np.array_equal(research.to_numpy(float), ours[ours["step"] > 0].to_numpy(float))


@needs_reference
def test_the_research_checkpoint(tmp_path):
    run = tmp_path / "research"
    run.mkdir()
    shutil.copy(REFERENCE_CHECKPOINT, run / "checkpoint_1000.pth")
    shutil.copy(REFERENCE / "tiny_qf_args.json", run / "args.json")
    data = tmp_path / "data"
    # Every line of the released val set is right (val_aux 1.0), so any of its lines are.
    write_files(data / "question_formation_data", {"question.val": read_text_lines(REFERENCE / "question.val")[:200]})
    assert run_analysis("checkpoints", run, "--splits", "val", "--data_dir", data) == 0
    assert run_analysis("internals", run, "--data_dir", data) == 0
    checkpoints = read_csv(run / "analysis" / "checkpoints.csv")
    expected = json.loads((REFERENCE / "tiny_qf_expected.json").read_text())
    assert checkpoints["step"].tolist() == [1000]
    assert checkpoints["val_aux"].item() == pytest.approx(expected["val_aux"])
    assert 0 <= checkpoints["val_full_seq"].item() <= 1
    internals = read_csv(run / "analysis" / "internals.csv")
    assert list(internals.columns) == INTERNALS_COLUMNS and internals["weight_norm"].item() > 0


# ------------------------------------------------------------------------------------------ bad input


def no_checkpoint(qf_run, ti_run, tmp_path) -> list[str]:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(os.path.join(qf_run, "args.json"), run)
    return [run]


def other_vocabulary(qf_run, ti_run, tmp_path) -> list[str]:
    """A QF run whose last checkpoint is a TI run's."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("args.json", "checkpoint_0.pth"):
        shutil.copy(os.path.join(qf_run, name), run)
    shutil.copy(os.path.join(ti_run, "checkpoint_2.pth"), run / "checkpoint_9.pth")
    return [run]


def other_vocabulary_research(qf_run, ti_run, tmp_path) -> list[str]:
    """A QF run with a research-format checkpoint (no arguments of its own) of a TI model."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(os.path.join(qf_run, "args.json"), run)
    state = torch.load(os.path.join(ti_run, "checkpoint_2.pth"), weights_only=True)["model_state_dict"]
    torch.save({"model_state_dict": state}, run / "checkpoint_2.pth")
    return [run]


BAD = [
    ("checkpoints", no_checkpoint, [], "no checkpoint"),
    ("internals", no_checkpoint, [], "no checkpoint"),
    ("checkpoints", other_vocabulary, [], "checkpoint_9.pth: a checkpoint of tense"),
    ("internals", other_vocabulary, [], "checkpoint_9.pth: a checkpoint of tense"),
    ("checkpoints", other_vocabulary_research, [], "this vocabulary needs"),
    ("checkpoints", lambda qf, ti, tmp: [qf], ["--splits", "val,test_rc"], "unknown eval split 'test_rc'"),
    ("checkpoints", lambda qf, ti, tmp: [qf], ["--splits", ","], "names no split"),
    ("checkpoints", lambda qf, ti, tmp: [qf], ["--data_dir", "nowhere"], "missing data file nowhere/"),
    ("internals", lambda qf, ti, tmp: [qf], ["--sentences", "0"], "--sentences must be at least 1"),
    ("internals", lambda qf, ti, tmp: [tmp / "nothing"], [], "not a run directory"),
]


@pytest.mark.parametrize("command, make_run, flags, message", BAD,
                         ids=[f"{c}-{m}" for c, _, _, m in BAD])
def test_bad_input_is_one_line_and_writes_nothing(qf_run, ti_run, tmp_path, capsys, command, make_run, flags,
                                                  message):
    out = tmp_path / "out"
    assert run_analysis(command, *make_run(qf_run, ti_run, tmp_path), *flags, "--out", out) == 2
    assert_one_line(capsys.readouterr().err, "error: ", message)
    assert not out.exists()


@pytest.mark.parametrize("command, flags, figures, fmt", [
    ("checkpoints", ["--splits", "val"], ["checkpoints"], "pdf"),
    ("internals", ["--sentences", "10"], ["internals"], "svg"),
    ("trees", ["--sentences", "5"], ["trees"], "svg"),
    ("probe", ["--sentences", "10", "--labels", "pos"], ["probe_pos"], "pdf"),
])
def test_checkpoint_analyses_write_their_figures_in_the_format_asked(qf_run, tmp_path, capsys, command, flags,
                                                                      figures, fmt):
    out = tmp_path / "out"
    assert run_analysis(command, qf_run, *flags, "--format", fmt, "--out", out) == 0
    tables = [f"{command}.csv"]
    assert sorted(os.listdir(out)) == sorted(tables + [f"{name}.{fmt}" for name in figures])
    for name in figures:
        assert_opens(out / f"{name}.{fmt}")
    assert capsys.readouterr().out.rstrip().endswith(f"to {out}")
