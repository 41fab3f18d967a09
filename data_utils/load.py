"""Load a task's splits as validated Examples, with the training filters applied."""
from __future__ import annotations

import os
from dataclasses import dataclass

from data_utils import question, tense
from data_utils.config import QF_FILTERS, TI_FILTERS, DataConfig
from data_utils.example import Example
from data_utils.lines import read_examples
from data_utils.registry import SPLITS, check_eval_splits, ensure_generated, get_dataset, split_path
from util import HierGenError
from vocabulary import WordVocabulary

WANDB_PROJECT = {"question": "hier-genv", "tense": "hier-genv-tense"}


@dataclass
class TaskData:
    """Everything training needs from the data: the vocabulary, training lines, eval splits."""

    task: str
    vocab: WordVocabulary
    train: list[Example]
    eval: dict[str, list[Example]]
    wandb_project: str


def read_split(cfg: DataConfig, split: str) -> list[Example]:
    """One split of the configured dataset, every line validated."""
    task = get_dataset(cfg.dataset).task
    path = split_path(cfg.dataset, split, cfg.data_dir, cfg.data_seed)
    if not os.path.exists(path):
        raise HierGenError(f"missing data file {path}")
    if task == "question":
        examples = read_examples(path, question.parse_line)
        # The types follow from the lines; a .type file beside them (the research layout) must agree.
        if split == "test" and os.path.exists(path + ".type"):
            question.check_type_file(path + ".type", examples)
        return examples
    if split in ("train", "val", "test"):
        return read_examples(path, tense.parse_line)
    return read_examples(path, tense.subsplit_parser(split.split("_", 1)[1]), spaced=True)


def validate_dataset(cfg: DataConfig) -> dict[str, int]:
    """Read and validate every file of the configured dataset; line count per split."""
    counts = {split: len(read_split(cfg, split)) for split in SPLITS[get_dataset(cfg.dataset).task]}
    if get_dataset(cfg.dataset).disamb:
        counts["disamb"] = len(read_examples(_disamb_file(cfg), question.parse_line))
    return counts


def _disamb_file(cfg: DataConfig) -> str:
    return os.path.join(get_dataset(cfg.dataset).path(cfg.data_dir, cfg.data_seed), "question.disamb")


def _train(cfg: DataConfig, task: str) -> list[Example]:
    train = read_split(cfg, "train")
    if task == "question":
        keeps = [question.FILTERS[name] for name in cfg.active(["exclude_identity", *QF_FILTERS])]
        if cfg.use_specified_decls is not None:
            keeps.append(question.specified_decls(cfg.decl_counts()))
        train = question.filter_train(train, keeps)
    else:
        train = tense.filter_train(train, cfg.active(["exclude_identity", *TI_FILTERS]))
    train = train[:int(len(train) * cfg.subset_train_frac)]
    if not train:
        raise HierGenError("the data filters and --subset_train_frac leave no training line")
    if cfg.disamb_num > 0:
        pool = read_examples(_disamb_file(cfg), question.parse_line)
        if len(pool) < cfg.disamb_num:
            raise HierGenError(f"--disamb_num {cfg.disamb_num} but question.disamb holds only {len(pool)} lines")
        train += question.filter_train(pool[:cfg.disamb_num], keeps)
    return train


def task_vocabulary(dataset: str) -> WordVocabulary:
    """The vocabulary of a dataset's task: every word its grammar can produce."""
    task = get_dataset(dataset).task
    return WordVocabulary(question.vocabulary_words() if task == "question" else tense.vocabulary_words())


def load_task(cfg: DataConfig, eval_splits: list[str]) -> TaskData:
    """Generate missing files, then read, validate and filter train and the requested eval splits."""
    cfg.check()
    task = get_dataset(cfg.dataset).task
    eval_splits = list(eval_splits) or ["val", "test"]
    check_eval_splits(cfg.dataset, eval_splits)
    ensure_generated(cfg.data_dir, cfg.dataset, cfg.data_seed)
    evals = read_eval(cfg, eval_splits)
    return TaskData(task, task_vocabulary(cfg.dataset), _train(cfg, task), evals, WANDB_PROJECT[task])


def read_eval(cfg: DataConfig, splits: list[str]) -> dict[str, list[Example]]:
    """Eval splits read and validated as training evaluates them (QF's --exclude_identity applies);
    their files must exist (nothing is generated here)."""
    evals = {split: read_split(cfg, split) for split in splits}
    if get_dataset(cfg.dataset).task == "question" and cfg.exclude_identity:
        evals = {split: question.filter_train(examples, [question.FILTERS["exclude_identity"]])
                 for split, examples in evals.items()}
    return evals
