"""The `--dataset` registry: every dataset name, its task, its folder, and how its files are generated.

Layout under `--data_dir` (research names; a data seed N > 0 appends `_seed{N}` to each folder):

    question_formation_data/question.{train,val,test,test.type}      question (standard QF)
    question_D{N}[v2]_formation_data/question.{train,val}            diversity; test from standard
    question_qf_disamb_formation_data/question.disamb                10,000 disambiguating quests;
                                                                    qf_disamb = standard + first K
    tense_inflection_data/tense.{train,val,test}, tense.{val,test}_{rc,prep,rc_sbj,rc_obj}
    tense_D{k}_inflection_data/tense.{train,val}, tense.val_*        tense mixes; test from standard

A dataset folder that does not exist is generated whole. One that exists (e.g. holding the
released files) is used as it is and never written to; it must hold every file of the dataset
except derived ones (question.test.type, whose tags follow from the test lines).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from data_utils import question, tense
from data_utils.lines import read_text_lines
from data_utils.stream import write_folder
from util import HierGenError

TYPED = tuple(f"{split}_{kind}" for split in ("val", "test") for kind in tense.SUBSPLITS)
SPLITS = {"question": ("train", "val", "test"), "tense": ("train", "val", "test") + TYPED}
STANDARD = {"question": "question", "tense": "tense"}


@dataclass(frozen=True)
class Dataset:
    """A dataset name: its task, the folder of its own files, and which splits those files hold.

    Splits it does not own come from the task's standard dataset. `build(seed, standard_folder)`
    returns its own files as name -> lines; `derived` files are a function of the others, so a
    folder of the user's may lack them.
    """

    name: str
    task: str
    folder: str
    files: tuple[str, ...]
    own_splits: tuple[str, ...]
    build: Callable[[int, str], dict[str, list[str]]]
    disamb: bool = False
    derived: tuple[str, ...] = ()

    def path(self, data_dir: str, seed: int) -> str:
        return os.path.join(data_dir, self.folder + (f"_seed{seed}" if seed else ""))


def split_file(task: str, split: str) -> str:
    """File name of a split, e.g. question.test or tense.val_rc."""
    return f"{task}.{split}"


def _registry() -> dict[str, Dataset]:
    qf_files = ("question.train", "question.val", "question.test", "question.test.type")
    ti_files = ("tense.train", "tense.val", "tense.test") + tuple(split_file("tense", s) for s in TYPED)
    datasets = [
        Dataset("question", "question", "question_formation_data", qf_files, SPLITS["question"],
                lambda seed, _: question.generate_standard(seed), derived=("question.test.type",)),
        Dataset("tense", "tense", "tense_inflection_data", ti_files, SPLITS["tense"],
                lambda seed, _: tense.generate_standard(seed)),
    ]
    for n in question.CFG["diversity_sizes"]:
        for version in ("", "v2"):
            name = f"question_D{n}{version}"
            datasets.append(Dataset(name, "question", f"{name}_formation_data", ("question.train", "question.val"),
                                    ("train", "val"),
                                    lambda seed, _, n=n, name=name: question.generate_diversity(seed, n, name)))
    for name in ("qf_disamb", "question_qf_disamb"):
        datasets.append(Dataset(name, "question", "question_qf_disamb_formation_data", ("question.disamb",), (),
                                lambda seed, std: question.generate_disamb(
                                    seed, read_text_lines(os.path.join(std, "question.test"))),
                                disamb=True))
    for name in tense.CFG["mixes"]:
        val_typed = tuple(s for s in TYPED if s.startswith("val"))
        datasets.append(Dataset(name, "tense", name + "_inflection_data",
                                ("tense.train", "tense.val") + tuple(split_file("tense", s) for s in val_typed),
                                ("train", "val") + val_typed,
                                lambda seed, _, name=name: tense.generate_mix(seed, name)))
    return {d.name: d for d in datasets}


REGISTRY = _registry()


def get_dataset(name: str) -> Dataset:
    if name not in REGISTRY:
        raise HierGenError(f"unknown dataset {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def split_path(name: str, split: str, data_dir: str, seed: int) -> str:
    """Where a dataset's split lives: its own folder, or the standard one of its task."""
    dataset = get_dataset(name)
    if split not in SPLITS[dataset.task]:
        raise HierGenError(f"unknown split {split!r} for {dataset.task}; valid: {', '.join(SPLITS[dataset.task])}")
    owner = dataset if split in dataset.own_splits else REGISTRY[STANDARD[dataset.task]]
    return os.path.join(owner.path(data_dir, seed), split_file(dataset.task, split))


def check_eval_splits(name: str, splits: list[str]) -> None:
    """Refuse evaluation splits that dataset `name` does not have (train is not one)."""
    task = get_dataset(name).task
    valid = [s for s in SPLITS[task] if s != "train"]
    for split in splits:
        if split not in valid:
            raise HierGenError(f"unknown eval split {split!r} for {task}; valid: {', '.join(valid)}")


def dataset_folders(name: str) -> list[Dataset]:
    """The datasets whose folders dataset `name` reads: its task's standard one, then its own."""
    dataset = get_dataset(name)
    standard = REGISTRY[STANDARD[dataset.task]]
    return [standard] if dataset is standard else [standard, dataset]


def missing_files(folder: str, dataset: Dataset) -> list[str]:
    """The files of `dataset` that `folder` lacks, derived ones (which follow from the others) aside."""
    return [f for f in dataset.files if f not in dataset.derived and not os.path.exists(os.path.join(folder, f))]


def ensure_generated(data_dir: str, name: str, data_seed: int = 0) -> None:
    """Generate the folders of dataset `name` (and of its task's standard dataset) that do not
    exist; refuse a folder that holds some of a dataset's files but not all of them."""
    standard = dataset_folders(name)[0]
    for d in dataset_folders(name):
        folder = d.path(data_dir, data_seed)
        present = [f for f in d.files if os.path.exists(os.path.join(folder, f))]
        if not present:
            write_folder(folder, d.build(data_seed, standard.path(data_dir, data_seed)))
            continue
        missing = missing_files(folder, d)
        if missing:
            raise HierGenError(f"{folder} holds {', '.join(present)} but not {', '.join(missing)}: add the "
                               "missing files, or move the folder away to have the whole dataset generated")
