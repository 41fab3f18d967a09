"""Dataset variants: diversity, disambiguation, tense mixes, and the registry."""
from collections import Counter

from data_utils import question, tense
from data_utils.config import DataConfig
from data_utils.load import load_task
from data_utils.registry import REGISTRY, split_path
from helpers import QF, QF_TEST, QF_TYPE, line_of, parse_qf, parse_ti, write_files

DISAMB = [
    "my yaks that don't sleep do change . quest\tdo my yaks that don't sleep change ?",
    "her newt who doesn't amuse the yak does eat . quest\tdoes her newt who doesn't amuse the yak eat ?",
    "the quail that our newt does admire doesn't move . quest\tdoesn't the quail that our newt does admire move ?",
]


def test_registry_knows_every_family():
    for name in ("question", "tense", "qf_disamb", "question_qf_disamb", "tense_D130",
                 *(f"question_D{n}{v}" for n in (20, 50, 100, 150, 200, 250, 300, 350, 374) for v in ("", "v2"))):
        assert name in REGISTRY
    assert split_path("question_D50v2", "test", "d", 0) == "d/question_formation_data/question.test"
    assert split_path("question_D50v2", "train", "d", 2) == "d/question_D50v2_formation_data_seed2/question.train"
    assert split_path("tense_D130", "val_rc", "d", 0) == "d/tense_D130_inflection_data/tense.val_rc"
    assert split_path("tense_D130", "test_rc", "d", 0) == "d/tense_inflection_data/tense.test_rc"


def test_disamb_appends_the_first_k_quests_after_filters_and_subset(qf_dir):
    write_files(f"{qf_dir}/question_qf_disamb_formation_data", {"question.disamb": DISAMB})

    def train(**flags):
        data = load_task(DataConfig(data_dir=qf_dir, **flags), [])
        return [line_of(e) for e in data.train]

    assert train(dataset="qf_disamb", disamb_num=2) == QF + DISAMB[:2]
    assert train(dataset="question_qf_disamb", disamb_num=0) == QF
    assert train(dataset="question_qf_disamb", disamb_num=-1) == QF
    assert train(dataset="qf_disamb", disamb_num=3, subset_train_frac=0.25) == QF[:2] + DISAMB
    assert train(dataset="qf_disamb", disamb_num=3, train_on_decl_only=True) == [QF[i] for i in (0, 2, 3, 5)]


def test_generated_disamb_pool_is_gen_type_and_disjoint_from_test(monkeypatch):
    monkeypatch.setitem(question.CFG, "disamb_pool", 300)
    test = question.generate_standard(0)["question.test"]
    pool = question.generate_disamb(0, test)["question.disamb"]
    assert len(pool) == 300 and not set(pool) & set(test)
    examples = [parse_qf(line) for line in pool]
    assert all(e.marker == "quest" and e.meta["n_aux"] == 2 and e.target.answers for e in examples)
    assert Counter(e.meta["subject"] == "orc" for e in examples) == {False: 200, True: 100}


def test_diversity_draws_train_and_val_from_n_iid_types(monkeypatch):
    monkeypatch.setitem(question.CFG, "sizes", {"train": 3000, "val": 200})
    files = question.generate_diversity(0, 20, "question_D20")
    train = [parse_qf(line) for line in files["question.train"]]
    val = [parse_qf(line) for line in files["question.val"]]
    types = {e.type_tag for e in train}
    assert len(train) == 3000 and len(types) == 20 and {e.type_tag for e in val} <= types
    iid = {question.type_tag(*t) for t in question.iid_types()}
    assert types <= iid and not set(files["question.train"]) & set(files["question.val"])
    other = [parse_qf(line) for line in question.generate_diversity(0, 20, "question_D20v2")["question.train"]]
    assert {e.type_tag for e in other} != types


def test_diversity_dataset_reads_its_own_train_and_the_standard_test(qf_dir):
    write_files(f"{qf_dir}/question_D20_formation_data", {"question.train": QF[:3], "question.val": QF[3:4]})
    data = load_task(DataConfig(dataset="question_D20", data_dir=qf_dir), ["val", "test"])
    assert len(data.train) == 3 and len(data.eval["val"]) == 1 and len(data.eval["test"]) == len(QF_TEST)
    assert data.eval["test"][0].type_tag == QF_TYPE[0] and data.wandb_project == "hier-genv"


def test_tense_mix_has_exact_shares_and_no_attractor(monkeypatch):
    monkeypatch.setitem(tense.CFG, "sizes", {"train": 2000, "val": 100, "test": 10})
    monkeypatch.setitem(tense.CFG, "mixes", {"tense_D130": tense.CFG["mixes"]["tense_D130"],
                                             "tense_Dx": {"PAST": 0.5, "subject": {"v": 0, "prep": 0, "rc": 1},
                                                          "rc_obj": 1.0}})
    files = tense.generate_mix(0, "tense_D130")
    train = [parse_ti(line) for line in files["tense.train"]]
    kinds = Counter("PAST" if e.marker == "PAST" else tense.MIX_KIND[e.meta["subject"]] for e in train)
    assert kinds == {"PAST": 200, "v": 180, "prep": 810, "rc": 810}
    assert not any(e.marker == "PRESENT" and e.meta["attractor"] for e in train)
    present = [e for e in map(parse_ti, tense.generate_mix(0, "tense_Dx")["tense.train"]) if e.marker == "PRESENT"]
    assert len(present) == 1000 and {e.meta["subject"] for e in present} == {"orc"}
