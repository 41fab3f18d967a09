"""What the test modules share: tiny configurations, example lines, and helpers that generate data, run
tiny trainings and read what they wrote. The fixtures built on these live in conftest.py."""
from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import train_transformers
from collate import collate
from config import parse_config
from data_utils import question, tense
from data_utils.example import EvalTarget, Example
from data_utils.lines import split_line
from data_utils.registry import ensure_generated
from sequence import encode
from transformer_helpers import ModelConfig, create_model
from vocabulary import WordVocabulary

# ---------------------------------------------------------------------------------------------- paths

REPO = Path(__file__).resolve().parents[1]
"""The repository root: the working folder of commands run as the user would."""
REFERENCE = REPO.parent / "shared" / "reference"
"""Material from the research code (released files, a checkpoint and what it computes); may be absent."""
REFERENCE_CHECKPOINT = REFERENCE / "tiny_qf_checkpoint_1000.pth"
"""The research code's tiny QF model after 1000 steps (RESEARCH_MODEL's size)."""

# ------------------------------------------------------------------------------ tiny configurations


def model_flags(layers: int, vec_dim: int, n_heads: int, tied: bool = True) -> list[str]:
    """The command-line flags of a model of `layers` encoder layers, width `vec_dim` and `n_heads` heads."""
    return ["--encoder_n_layers", str(layers), "--vec_dim", str(vec_dim), "--n_heads", str(n_heads),
            *(["--tied-embedding"] if tied else [])]


RESEARCH_MODEL = model_flags(2, 128, 4)
"""The model flags of the research code's tiny QF run (the size of REFERENCE_CHECKPOINT)."""
TINY_QF_RUN = [*model_flags(1, 32, 2), "--lr", "1e-3", "--num_warmup_steps", "5", "--dataset", "question",
               "--callback", "--eval_keys", "val"]
"""A QF run of a one-layer model, evaluated on val; steps and saving are up to the test."""
TINY_MODEL = dict(vec_dim=32, n_heads=4, encoder_n_layers=2)
"""The ModelConfig fields of tiny_model unless overridden."""


def tiny_model(seed: int = 0, n_words: int = 11, **overrides) -> torch.nn.Module:
    """A fresh model in eval mode, initialised from `seed`: TINY_MODEL with `overrides` (any family)."""
    torch.manual_seed(seed)
    return create_model(ModelConfig(**{**TINY_MODEL, **overrides}), n_words).eval()


# ------------------------------------------------------------------------------------- example lines

QF = [
    "the newt does swim . decl\tthe newt does swim .",                                       # 0 decl 1 aux
    "the newt does swim . quest\tdoes the newt swim ?",                                       # 1 quest 1 aux
    "my yak who doesn't eat does move . decl\tmy yak who doesn't eat does move .",            # 2 decl 2 SRC
    "my yaks that our newt does amuse don't read . decl\tmy yaks that our newt does amuse don't read .",  # 3 decl 2 ORC
    "her raven does comfort the zebras who don't sleep . quest\tdoes her raven comfort the zebras who don't sleep ?",  # 4
    "some quail who does applaud your newts doesn't admire my yaks that don't giggle . decl\t"
    "some quail who does applaud your newts doesn't admire my yaks that don't giggle .",      # 5 decl 3 SRC
    "the zebra near my newts doesn't wait . quest\tdoesn't the zebra near my newts wait ?",   # 6 quest 1 aux
    "your peacocks do accept her newt that the yaks do remember . quest\t"
    "do your peacocks accept her newt that the yaks do remember ?",                           # 7 quest 2 aux
]
"""Hand-written QF training lines, one of each kind the training filters tell apart."""
QF_TEST = ["my raven that doesn't sleep does change . quest\tdoes my raven that doesn't sleep change ?"]
"""A QF generalization line: the main auxiliary is the second one, of the other polarity."""
QF_TYPE = ["det n_s rel aux_s v_intrans aux_s v_intrans quest\taux_s det n_s rel aux_s v_intrans v_intrans"]
"""The type line (question.test.type) of QF_TEST."""
TI = [
    "the newt swam . PAST\tthe newt swam .",                                                  # 0 PAST v
    "the newts swam . PRESENT\tthe newts swim .",                                             # 1 PRESENT v
    "my yak near the zebras ate . PAST\tmy yak near the zebras ate .",                        # 2 PAST simple
    "my yak near the zebra ate . PRESENT\tmy yak near the zebra eats .",                      # 3 PRESENT simple
    "her ravens who slept read . PAST\ther ravens who slept read .",                          # 4 PAST rc (SRC)
    "her ravens who slept read . PRESENT\ther ravens who sleep read .",                       # 5 PRESENT rc (SRC)
    "some quail that our newt amused waited . PRESENT\tsome quail that our newt amuses waits .",  # 6 PRESENT rc (ORC)
    "your unicorn that our walruses comforted applauded the yak . PAST\t"
    "your unicorn that our walruses comforted applauded the yak .",                           # 7 PAST rc (ORC)
]
"""Hand-written TI training lines, one of each kind the training filters tell apart."""
BATCH_LINES = [
    "the yak does swim . quest\tdoes the yak swim ?",
    "my newt doesn't read . decl\tmy newt doesn't read .",
    "the zebras who do swim don't eat . quest\tdon't the zebras who do swim eat ?",
    "your yaks don't read . quest\tdon't your yaks read ?",
    "the newt that doesn't eat does swim . quest\tdoes the newt that doesn't eat swim ?",
    "my zebras that do read do swim . quest\tdo my zebras that do read swim ?",
]
"""QF lines of different lengths for the model tests' batches: five questions and a declarative."""
AUXILIARIES = ("do", "does", "don't", "doesn't")
"""The candidates of a QF question's target word."""


def example(line: str, out_index: int = 0) -> Example:
    """A QF line as an Example; a question's target is its output word `out_index`, among AUXILIARIES."""
    source, output = (part.split() for part in line.split("\t"))
    target = EvalTarget(out_index, output[out_index], AUXILIARIES) if source[-1] == "quest" else None
    return Example(tuple(source[:-1]), source[-1], tuple(output), target)


def vocab_of(lines: list[str]) -> WordVocabulary:
    """The vocabulary of the words of QF `lines`, in order of appearance."""
    return WordVocabulary(w for line in lines for w in example(line).words)


def batch_of(lines: list[str], vocab: WordVocabulary, out_index: int = 0):
    """QF `lines` encoded with `vocab` and collated into one padded batch (see example)."""
    return collate([encode(example(line, out_index), vocab) for line in lines], len(vocab) + 2)


def parse_qf(line: str) -> Example:
    """A QF line parsed and checked by the task's own parser."""
    return question.parse_line(*split_line(line))


def parse_ti(line: str) -> Example:
    """A TI line parsed and checked by the task's own parser."""
    return tense.parse_line(*split_line(line))


def line_of(e: Example) -> str:
    """The file line an Example was read from."""
    return " ".join(e.input + (e.marker,)) + "\t" + " ".join(e.output)


# ---------------------------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=None)
def generated() -> str:
    """A temporary data dir holding the default files (data seed 0)."""
    data_dir = tempfile.mkdtemp(prefix="hier_gen_data_")
    atexit.register(shutil.rmtree, data_dir, True)
    ensure_generated(data_dir, "question", 0)
    ensure_generated(data_dir, "tense", 0)
    return data_dir


def qf_path(name: str) -> Path:
    """The generated default QF file `name`."""
    return Path(generated(), "question_formation_data", name)


def ti_path(name: str) -> Path:
    """The generated default TI file `name`."""
    return Path(generated(), "tense_inflection_data", name)


def lines(path: str | Path) -> list[str]:
    """The lines of a text file, without their newlines."""
    return Path(path).read_text().splitlines()


def write_files(folder: str | Path, files: dict[str, list[str]]) -> None:
    """Write each file name -> lines into `folder` (made if missing), every line ending in a newline."""
    os.makedirs(folder, exist_ok=True)
    for name, content in files.items():
        Path(folder, name).write_text("".join(line + "\n" for line in content))


def chi2_p(a: Counter, b: Counter) -> float:
    """p-value of a chi-square homogeneity test of two samples; cells with expected count < 5 pooled."""
    from scipy.stats import chi2_contingency

    na, nb = sum(a.values()), sum(b.values())
    kept, rare = [], [0, 0]
    for cell in set(a) | set(b):
        if (a[cell] + b[cell]) * min(na, nb) / (na + nb) < 5:
            rare[0] += a[cell]
            rare[1] += b[cell]
        else:
            kept.append((a[cell], b[cell]))
    if sum(rare):
        kept.append(tuple(rare))
    return float(chi2_contingency(kept, correction=False).pvalue)


# ------------------------------------------------------------------------------------- runs and files


def train(data_dir: str, *args: str) -> int:
    """train_transformers.main on the data in `data_dir` with `args`: the run's exit code."""
    return train_transformers.main(["--data_dir", data_dir, *args])


def run_config(data_dir: str, *args: str):
    """The configuration of a run on the data in `data_dir` with `args`, read without the environment."""
    return parse_config(["--data_dir", data_dir, *args], environ={})


def run_python(*argv: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """This interpreter run with `argv` in the repository, as a user would; output captured as text."""
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def assert_one_line(err: str, *fragments: str) -> None:
    """`err` is one line, and holds every fragment."""
    assert err.count("\n") == 1 and all(fragment in err for fragment in fragments), err


def read_jsonl(path: str | Path) -> list[dict]:
    """The JSON object on each line of a file."""
    with open(path) as f:
        return [json.loads(line) for line in f]


def events(run_dir: str | Path) -> list[dict]:
    """Every event a run logged to its metrics.jsonl, in order."""
    return read_jsonl(os.path.join(run_dir, "metrics.jsonl"))


def eval_events(run_dir: str | Path) -> dict[int, dict]:
    """A run's evaluation events by step."""
    return {e["iteration"]: e for e in events(run_dir) if "curr-val-ppl" in e}


def checkpoint_at(run_dir: str | Path, step: int) -> dict:
    """The checkpoint a run saved at `step`, loaded as weights only."""
    return torch.load(os.path.join(run_dir, f"checkpoint_{step}.pth"), weights_only=True)


class Payload:
    """Unpickling this runs `touch <marker>`: no checkpoint load may ever do that."""

    def __init__(self, marker: str | Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ----------------------------------------------------------------------------------- analysis input

ARGS = {"dataset": "question", "lr": 0.0001, "encoder_n_layers": 6, "seed": 1, "seeds": "", "save_dir": "x",
        "save_prefix": "p", "run_name": None, "data_dir": "data_utils", "device": "auto", "gpu_id": 0,
        "wandb_mode": None, "wandb_entity": None, "resume": False, "eval_batch_size": 32, "model_load_path": ""}
"""The args.json of a QF run, as the analyses read it."""


def write_run(path, args: dict, events: list[dict] | None, tail: str = "") -> str:
    """A run directory: args.json and, unless `events` is None, metrics.jsonl (plus raw `tail`)."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "args.json"), "w") as f:
        json.dump(args, f)
    if events is not None:
        with open(os.path.join(path, "metrics.jsonl"), "w") as f:
            f.write("".join(json.dumps(e) + "\n" for e in events) + tail)
    return str(path)


def evals(steps, values, **series) -> list[dict]:
    """Evaluation events of test_aux (and of other series), with per-step events between them."""
    out = []
    for k, (step, value) in enumerate(zip(steps, values)):
        out.append({"loss": 1.0, "lr": 1e-4, "iteration": step + 1})
        out.append({"test_aux": value, **{name: v[k] for name, v in series.items()}, "iteration": step})
    return out


def read_csv(path):
    """A table the analyses wrote, with empty cells as NaN and every other value as written."""
    import pandas as pd

    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def assert_opens(path) -> None:
    """The file is a whole figure of its format; a PDF embeds its fonts as TrueType, none as Type 3."""
    data = open(path, "rb").read()
    fmt = os.path.splitext(path)[1]
    if fmt == ".png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and plt.imread(path).ndim == 3
    elif fmt == ".pdf":
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
        assert b"/FontFile2" in data and b"/Type3" not in data
    else:
        assert ET.parse(path).getroot().tag == "{http://www.w3.org/2000/svg}svg"
