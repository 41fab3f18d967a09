"""Reading data files: split each line into input / marker / output and name `file:line` on errors."""
from __future__ import annotations

from typing import Callable, Iterator

from data_utils.example import Example
from data_utils.grammar import BadLine
from util import HierGenError

Parse = Callable[[tuple[str, ...], str, tuple[str, ...]], Example]


def split_line(text: str, spaced: bool = False) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
    """`input . marker<TAB>output` (or with a space instead of the tab in typed TI sub-splits)."""
    if not text.strip():
        raise BadLine("empty line")
    if text.endswith("\r"):
        raise BadLine("Windows line ending (\\r\\n); convert the file to \\n line endings")
    if spaced:
        words = text.split(" ")
        if "." not in words[:-1]:
            raise BadLine("no '.' before the marker")
        end = words.index(".") + 1
        source, marker, target = words[:end], words[end], words[end + 1:]
    else:
        parts = text.split("\t")
        if len(parts) != 2:
            raise BadLine(f"expected one tab between input and output, found {len(parts) - 1}")
        source, target = parts[0].split(" "), parts[1].split(" ")
        source, marker = source[:-1], source[-1]
    if "" in source or "" in target:
        raise BadLine("empty token (double or trailing space)")
    if len(source) < 2 or source[-1] != ".":
        raise BadLine("the input must end with ' .' before the marker")
    return tuple(source), marker, tuple(target)


def numbered_lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, text without its newline) of a UTF-8 text file; HierGenError names the file
    (and the line) when it cannot be read or is not UTF-8 text."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise HierGenError(f"cannot read {path}: {e.strerror}") from None
    with f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise HierGenError(f"{path}:{number}: not UTF-8 text") from None
            if number == 1:
                text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
            yield number, text[:-1] if text.endswith("\n") else text


def read_examples(path: str, parse: Parse, spaced: bool = False) -> list[Example]:
    """Every line of `path` parsed and validated; the first bad line raises HierGenError."""
    examples = []
    for number, text in numbered_lines(path):
        try:
            examples.append(parse(*split_line(text, spaced)))
        except BadLine as e:
            raise HierGenError(f"{path}:{number}: {e}") from None
    if not examples:
        raise HierGenError(f"{path}: file is empty")
    return examples


def read_text_lines(path: str) -> list[str]:
    """The lines of a plain text file without their newlines."""
    return [text for _, text in numbered_lines(path)]
