"""Copy detection: answer cells that paste the reference implementation's source.

A student may copy a function of :mod:`mbrl_course` into an answer cell instead of writing it.
:func:`copied_from_reference` compares each answer with the source files of the reference modules
line by line, after normalising both (:func:`normalized_lines`):

- comments, docstrings and blank lines go, whitespace runs become one space;
- trivial lines go: shorter than :data:`MIN_CHARS` characters, imports, ``return <name>``, ``pass``...

and flags an answer that holds ``min_lines`` or more consecutive normalised lines that also follow
each other in one reference file::

    copied_from_reference({"cem": source}, ["mbrl_course.planning"])
    # ['cell cem: 7 lines copied verbatim from mbrl_course/planning/cem.py (lines 88-97)']

Renaming variables or reordering lines defeats it: it finds verbatim copies, the common case, and
says where they come from; a person judges the rest.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

MIN_CHARS = 12
"""Normalised lines shorter than this are too common to count (``else:``, ``x = 0``, ``return x``)."""
_TRIVIAL = re.compile(r"^(import \S.*|from \S+ import .*|return [\w.]+|pass|continue|break|raise|"
                      r"(try|else|finally|except( \w[\w.]*)?( as \w+)?):|[\])}]+[,:)\]}]*)$")
_MAGIC = re.compile(r"^\s*[%!]")


@dataclass(frozen=True)
class Line:
    """A normalised source line and where it was."""

    number: int
    """1-based line number in the original source."""
    text: str


def _docstring_lines(tree: ast.AST) -> set[int]:
    """Lines of docstrings and other bare string statements (documentation, not code)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            lines |= set(range(node.lineno, node.end_lineno + 1))
    return lines


def _without_comments(source: str) -> list[str]:
    """The lines of ``source`` with their comments cut (by the tokenizer, so ``"#"`` in strings stays)."""
    lines = source.splitlines()
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                row, col = token.start
                lines[row - 1] = lines[row - 1][:col]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        lines = [line.split("#", 1)[0] if line.lstrip().startswith("#") else line for line in lines]
    return lines


def normalized_lines(source: str, min_chars: int = MIN_CHARS) -> list[Line]:
    """The lines of Python ``source`` that count for copy detection, normalised, with their line numbers.

    IPython magics (``%...``, ``!...``) are blanked before parsing; source that does not parse keeps
    its docstrings but still loses comments and blank lines.
    """
    source = "\n".join("" if _MAGIC.match(line) else line for line in source.splitlines())
    try:
        documentation = _docstring_lines(ast.parse(source))
    except SyntaxError:
        documentation = set()
    kept = []
    for number, line in enumerate(_without_comments(source), start=1):
        text = " ".join(line.split())
        if number in documentation or len(text) < min_chars or _TRIVIAL.match(text):
            continue
        kept.append(Line(number, text))
    return kept


def reference_files(module: str) -> list[Path]:
    """The source files of ``module`` (every ``.py`` below it for a package), without importing it."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None and not spec.submodule_search_locations:
        raise ValueError(f"reference_modules: no module {top!r} is installed (from {module!r})")
    base = Path(spec.submodule_search_locations[0]) if spec.submodule_search_locations else Path(spec.origin)
    path = base.joinpath(*rest)
    if path.is_dir():
        return sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
    if path.with_suffix(".py").is_file():
        return [path.with_suffix(".py")]
    if not rest and base.is_file():
        return [base]
    raise ValueError(f"reference_modules: {module!r} has no source file or folder (looked for {path})")


def _display_name(path: Path, module: str) -> str:
    """``mbrl_course/planning/cem.py`` for a file of ``mbrl_course.planning``."""
    spec = importlib.util.find_spec(module.split(".")[0])
    root = Path(spec.submodule_search_locations[0]).parent if spec.submodule_search_locations else path.parent
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def copied_from_reference(answers: dict[str, str], reference_modules: list[str], min_lines: int = 4) -> list[str]:
    """Flags for the answer cells that contain a verbatim copy of the reference modules' source.

    ``answers``: grade id -> the cell's source. ``reference_modules``: dotted names, e.g.
    ``["mbrl_course.planning"]`` (a package means every ``.py`` below it). An answer is flagged for
    each maximal run of ``min_lines`` or more consecutive normalised lines (:func:`normalized_lines`)
    that also follow each other in one reference file; each flag reads
    ``"cell <id>: N lines copied verbatim from <file> (lines a-b)"``, with the reference file's lines.
    """
    if not isinstance(min_lines, int) or min_lines < 1:
        raise ValueError(f"min_lines: expected a positive integer, got {min_lines!r}")
    references: list[tuple[str, list[Line]]] = []
    for module in reference_modules:
        for path in reference_files(module):
            references.append((_display_name(path, module), normalized_lines(path.read_text(encoding="utf-8"))))
    index: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    for ref_id, (_, lines) in enumerate(references):
        texts = [line.text for line in lines]
        for start in range(len(texts) - min_lines + 1):
            index.setdefault(tuple(texts[start:start + min_lines]), []).append((ref_id, start))

    flags = []
    for grade_id, source in answers.items():
        lines = normalized_lines(source)
        texts = [line.text for line in lines]
        i = 0
        while i + min_lines <= len(texts):
            best = None  # (length, reference, start in the reference)
            for ref_id, start in index.get(tuple(texts[i:i + min_lines]), ()):
                ref_texts = references[ref_id][1]
                length = min_lines
                while (i + length < len(texts) and start + length < len(ref_texts)
                       and texts[i + length] == ref_texts[start + length].text):
                    length += 1
                if best is None or length > best[0]:
                    best = (length, ref_id, start)
            if best is None:
                i += 1
                continue
            length, ref_id, start = best
            name, ref_lines = references[ref_id]
            flags.append(f"cell {grade_id}: {length} lines copied verbatim from {name} "
                         f"(lines {ref_lines[start].number}-{ref_lines[start + length - 1].number})")
            i += length
    return flags
