"""Grammar, transformations, eval targets and vocabularies of both tasks."""
import json

import pytest

from data_utils import question, tense
from helpers import QF_TEST, QF_TYPE, REFERENCE, parse_qf, parse_ti
from vocabulary import WordVocabulary


def test_qf_vocabulary_matches_research_ids():
    vocab = WordVocabulary(question.vocabulary_words())
    assert len(vocab) == 69
    assert [vocab.index[w] for w in (".", "?", "decl", "do", "does", "doesn't", "don't", "quest")] == [1, 2, 15, 16, 17, 18, 19, 37]
    expected = REFERENCE / "tiny_qf_expected.json"
    if not expected.exists():
        pytest.skip("../shared/reference is absent")
    assert vocab.words == json.loads(expected.read_text())["vocab"]


def test_ti_vocabulary_has_101_entries():
    vocab = WordVocabulary(tense.vocabulary_words())
    assert len(vocab) == 101
    assert {"decl", "quest", "PAST", "PRESENT", "read", "reads", "ate", "high_fives"} <= set(vocab.words)


def test_each_task_has_30_distinct_frames_and_374_iid_qf_types():
    assert len(question.GRAMMAR.frames) == len(tense.GRAMMAR.frames) == 30
    assert len(question.iid_types()) == 374
    assert len({question.type_tag(*t) for t in question.iid_types()}) == 374


def test_qf_quest_fronts_the_main_auxiliary_and_names_both_rules():
    e = parse_qf(QF_TEST[0])
    assert e.target.out_index == 0 and e.target.gold == "does"
    assert e.target.candidates == ("do", "does", "don't", "doesn't")
    assert e.target.answers == (("hierarchical", "does"), ("linear", "doesn't"))
    assert e.meta == {"subject": "src_i", "main": 5, "n_aux": 2}
    assert e.type_tag == QF_TYPE[0]


def test_qf_unambiguous_quest_has_no_answers_and_decl_no_target():
    assert parse_qf("the walrus doesn't move . quest\tdoesn't the walrus move ?").target.answers == ()
    assert parse_qf("the walrus doesn't move . decl\tthe walrus doesn't move .").target is None


def test_qf_gen_acceptance_rule():
    def accepted(sentence):
        words = tuple(sentence.split())
        return question.is_gen(question.GRAMMAR.parse(words[:-1])[0], words)
    assert accepted("my raven that doesn't sleep does change .")
    assert not accepted("my raven that does sleep does change .")  # same polarity
    assert not accepted("my raven that our yaks don't amuse does change .")  # different number
    assert not accepted("my raven that doesn't sleep does amuse the yak who does eat .")  # 3 auxiliaries


def test_ti_present_agrees_with_controllers_and_targets_the_main_verb():
    e = parse_ti("my zebra below the vultures changed . PRESENT\tmy zebra below the vultures changes .")
    assert e.target.out_index == 5 and e.target.gold == "changes" and e.target.candidates is None
    assert e.target.answers == (("agree_subject", "changes"), ("agree_recent", "change"))
    e = parse_ti("the orangutans that comforted some walrus accepted my yak that remembered my salamander . "
                 "PRESENT\tthe orangutans that comfort some walrus accept my yak that remembers my salamander .")
    assert e.target.out_index == 6 and e.target.gold == "accept"
    assert e.target.answers == (("agree_subject", "accept"), ("agree_recent", "accepts"))
    assert e.meta == {"subject": "src_t", "main": 6, "attractor": True}
    e = parse_ti("your unicorns that our xylophone comforted read . PRESENT\t"
                 "your unicorns that our xylophone comforts read .")
    assert e.target.gold == "read" and e.target.answers == (("agree_subject", "read"), ("agree_recent", "reads"))
    assert parse_ti("the salamanders upon my newts read . PAST\tthe salamanders upon my newts read .").target is None
