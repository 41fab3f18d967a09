"""The data flags: one typed configuration, its argparse flags (research names and defaults), checks.

Filters combine by intersection: a training line is kept only if every active filter keeps it
(the research code silently applied only the first active flag). `--subset_train_frac` then
takes the first int(N*f) of the filtered lines; `--disamb_num K` appends the first K
disambiguating quests afterwards (the QF filters apply to them too).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields

from data_utils import question, tense
from data_utils.registry import REGISTRY, get_dataset
from util import HierGenError

QF_FILTERS = {
    "train_on_decl_only": "QF: train on decls only",
    "train_on_compl_only": "QF: train on lines whose input has >= 2 auxiliaries",
    "train_on_simple_only": "QF: train on lines whose input has < 2 auxiliaries",
    "train_on_hier_only": "QF: train on all quests + decls whose subject has an object relative",
    "train_on_linear_only": "QF: train on all quests + decls whose subject has a subject relative",
    "exclude_complex_decls": "QF: train on all quests + decls with 1 auxiliary",
    "exclude_simple_decls": "QF: train on all quests + decls with exactly 2 auxiliaries",
    "exclude_middle_decls": "QF: train on all quests + decls with more than 2 auxiliaries",
    "exclude_complex_quest": "QF: train on all decls + quests with < 2 auxiliaries",
    "exclude_simple_quest": "QF: train on all decls + quests with >= 2 auxiliaries",
    "pretrain": "QF: train on decls + quests with one auxiliary",
}
TI_FILTERS = {
    "include_past_simple": "TI: PAST lines only with a PP subject",
    "include_past_simple_verb": "TI: PAST lines only with a PP or bare subject",
    "include_past_complex": "TI: PAST lines only with an RC subject",
    "include_past_complex_verb": "TI: PAST lines only with an RC or bare subject",
    "include_present_simple": "TI: PRESENT lines only with a PP subject",
    "include_present_simple_verb": "TI: PRESENT lines only with a PP or bare subject",
    "include_present_complex": "TI: PRESENT lines only with an RC subject",
    "include_present_complex_verb": "TI: PRESENT lines only with an RC or bare subject",
    "include_subject_rc_obj": "TI: PRESENT lines only with an object-relative or no RC subject (all PAST kept)",
    "include_subject_rc_subj": "TI: PRESENT lines only with a subject-relative or no RC subject (all PAST kept)",
}
assert set(QF_FILTERS) == set(question.FILTERS) - {"exclude_identity"}
assert set(TI_FILTERS) == set(tense.FILTERS) | set(tense.RC_FILTERS)


@dataclass(frozen=True)
class DataConfig:
    """Every data flag, under its argparse dest name."""

    dataset: str = "question"
    data_dir: str = "data_utils"
    data_seed: int = 0
    subset_train_frac: float = 1.0
    disamb_num: int = -1
    exclude_identity: bool = False
    train_on_decl_only: bool = False
    train_on_compl_only: bool = False
    train_on_simple_only: bool = False
    train_on_hier_only: bool = False
    train_on_linear_only: bool = False
    exclude_complex_decls: bool = False
    exclude_simple_decls: bool = False
    exclude_middle_decls: bool = False
    exclude_complex_quest: bool = False
    exclude_simple_quest: bool = False
    use_specified_decls: str | None = None
    pretrain: bool = False
    include_past_simple: bool = False
    include_past_simple_verb: bool = False
    include_past_complex: bool = False
    include_past_complex_verb: bool = False
    include_present_simple: bool = False
    include_present_simple_verb: bool = False
    include_present_complex: bool = False
    include_present_complex_verb: bool = False
    include_subject_rc_obj: bool = False
    include_subject_rc_subj: bool = False

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> "DataConfig":
        """The data flags of a parsed namespace, checked."""
        cfg = cls(**{f.name: getattr(ns, f.name) for f in fields(cls)})
        cfg.check()
        return cfg

    def active(self, names) -> list[str]:
        """The flags among `names` that are on."""
        return [name for name in names if getattr(self, name)]

    def decl_counts(self) -> set[int]:
        """`--use_specified_decls 1,3` as {1, 3}."""
        try:
            counts = {int(part) for part in self.use_specified_decls.split(",")}
        except ValueError:
            raise HierGenError(f"--use_specified_decls wants auxiliary counts like 1,3, got {self.use_specified_decls!r}") from None
        if min(counts) < 1:
            raise HierGenError("--use_specified_decls counts must be >= 1")
        return counts

    def check(self) -> None:
        """Refuse values and combinations that cannot work, with a one-line HierGenError."""
        task = get_dataset(self.dataset).task
        if self.data_seed < 0:
            raise HierGenError("--data_seed must be >= 0")
        if not self.data_dir:
            raise HierGenError("--data_dir is empty")
        if os.path.exists(self.data_dir) and not os.path.isdir(self.data_dir):
            raise HierGenError(f"--data_dir {self.data_dir} is a file, not a folder")
        if not 0 < self.subset_train_frac <= 1:
            raise HierGenError("--subset_train_frac must be in (0, 1]")
        qf = self.active(QF_FILTERS) + (["use_specified_decls"] if self.use_specified_decls is not None else [])
        if task == "tense" and qf:
            raise HierGenError(f"QF filter --{qf[0]} does not apply to the TI dataset {self.dataset}")
        ti = self.active(TI_FILTERS)
        if task == "question" and ti:
            raise HierGenError(f"TI filter --{ti[0]} does not apply to the QF dataset {self.dataset}")
        if self.use_specified_decls is not None:
            self.decl_counts()
        if self.disamb_num > 0 and not get_dataset(self.dataset).disamb:
            raise HierGenError(f"--disamb_num only applies to --dataset qf_disamb or question_qf_disamb, not {self.dataset}")
        if self.disamb_num < -1:
            raise HierGenError(f"--disamb_num must be -1, 0 (both: none) or a count of lines (got {self.disamb_num})")
        if self.disamb_num > question.CFG["disamb_pool"]:
            raise HierGenError(f"--disamb_num is at most {question.CFG['disamb_pool']}")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the data flags with the names, spellings and defaults of the research code."""
    d = DataConfig()
    parser.add_argument("--dataset", default=d.dataset,
                        help=f"dataset name; one of: {', '.join(REGISTRY)}")
    parser.add_argument("--data_dir", default=d.data_dir, help="folder of the dataset folders (missing files are generated)")
    parser.add_argument("--data_seed", type=int, default=d.data_seed,
                        help="seed of generated data (0 = the research folder names; N > 0 adds _seed{N})")
    parser.add_argument("--subset_train_frac", type=float, default=d.subset_train_frac,
                        help="train on the first int(N*f) lines (after filters)")
    parser.add_argument("--disamb_num", type=int, default=d.disamb_num,
                        help="qf_disamb: add this many disambiguating quests to training (-1 or 0: none)")
    parser.add_argument("--exclude_identity", action="store_true",
                        help="QF: quests only, in all splits; TI: PRESENT lines only, in training")
    for name, text in QF_FILTERS.items():
        parser.add_argument(f"--{name}", action="store_true", help=text)
    parser.add_argument("--use_specified_decls", default=None,
                        help="QF: train on all quests + decls whose auxiliary count is listed, e.g. 1,3")
    for name, text in TI_FILTERS.items():
        parser.add_argument(f"--{name}", action="store_true", help=text)
