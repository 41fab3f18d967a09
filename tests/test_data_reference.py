"""Generated data vs the released files (skipped without the reference files)."""
import json
import math
from collections import Counter
from pathlib import Path

import pytest

from data_utils import question, tense
from data_utils.lines import read_examples
from helpers import REFERENCE, chi2_p, generated, lines, qf_path, ti_path

pytestmark = pytest.mark.skipif(not REFERENCE.exists(), reason="../shared/reference is absent")


def read(folder, name, parse):
    return read_examples(str(Path(generated(), folder, name)), parse)


def cells(examples):
    """(tag sequence, marker) of each line: the input half of its type tag."""
    return Counter(e.type_tag.split("\t")[0] for e in examples)


@pytest.mark.parametrize("folder,name,parse", [
    ("question_formation_data", "question.val", question.parse_line),
    ("tense_inflection_data", "tense.val", tense.parse_line),
])
def test_generated_val_matches_released_val(folder, name, parse):
    released = read_examples(str(REFERENCE / name), parse)
    assert chi2_p(cells(read(folder, name, parse)), cells(released)) > 0.001


def test_iid_aggregates_match_the_spec():
    qf = read("question_formation_data", "question.train", question.parse_line)
    assert abs(sum(e.marker == "quest" for e in qf) / len(qf) - 0.405) <= 0.02
    aux = Counter(e.meta["n_aux"] for e in qf)
    for count, share in ((1, 0.52), (2, 0.42), (3, 0.06)):
        assert abs(aux[count] / len(qf) - share) <= 0.02
    ti = read("tense_inflection_data", "tense.train", tense.parse_line)
    assert abs(sum(e.marker == "PAST" for e in ti) / len(ti) - 0.59) <= 0.02


def test_qf_gen_types_match_the_research_test_set():
    research = json.loads((REFERENCE / "tiny_qf_expected.json").read_text())["test_aux_per_type"]
    types = Counter(t.replace("\t", " ") for t in lines(qf_path("question.test.type")))
    assert set(types) == set(research)
    assert chi2_p(types, Counter({t: count for t, (_, count) in research.items()})) > 0.001


def test_typed_val_subsplit_sizes_are_plausible():
    for kind in tense.SUBSPLITS:
        mine = len(lines(ti_path(f"tense.val_{kind}")))
        released = len(lines(REFERENCE / f"tense.val_{kind}"))
        assert abs(mine - released) <= 4 * math.sqrt(released) + 5, kind
