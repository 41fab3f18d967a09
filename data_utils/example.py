"""One data line as the rest of the code sees it: words plus what the evaluation looks at."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EvalTarget:
    """The one next-token prediction that decides a line's task accuracy.

    The model sees `[SOS] input marker output[:out_index]` and must predict `output[out_index]`
    (= `gold`). `candidates` restricts the argmax (QF: the four auxiliaries); None means the
    whole vocabulary (TI). `answers` names what each competing rule would predict, e.g.
    (("hierarchical", "does"), ("linear", "doesn't")) on a QF generalization line, or
    (("agree_subject", "eats"), ("agree_recent", "eat")) on a TI line with an attractor.
    """

    out_index: int
    gold: str
    candidates: tuple[str, ...] | None = None
    answers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Example:
    """A parsed, validated data line `input marker<TAB>output`.

    `input` ends with '.', `output` with '.' or '?'. `target` is None for lines that carry no
    task accuracy (QF decl, TI PAST). `type_tag` is the `.type` line of QF test lines (or the
    line's tag sequence), used for per-type accuracy. `meta` holds task-specific facts for
    analysis (e.g. the index of the main auxiliary / main verb in the input).
    """

    input: tuple[str, ...]
    marker: str
    output: tuple[str, ...]
    target: EvalTarget | None = None
    type_tag: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def words(self) -> tuple[str, ...]:
        """The training sequence without SOS/EOS: the line with the tab replaced by a space."""
        return self.input + (self.marker,) + self.output

    @property
    def prefix_len(self) -> int:
        """Number of tokens before the marker (the input including its '.')."""
        return len(self.input)
