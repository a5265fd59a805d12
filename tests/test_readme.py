"""The README as the project's entry point, checked on its text (offline, no command is run):

- at most 120 lines, with `make book` and `make test` in a ```bash block in its first 25 lines;
- its module map names every module of `aqa_core/` (by path, e.g. `aqa_core/study/pipeline/study.py`)
  and no module that is gone; a package's `__init__.py` is not listed, `__main__.py` is;
- every `make` target it names is a target of the Makefile;
- every `python -m aqa_core COMMAND` it shows is a command of `aqa_core/__main__.py`, and each
  `--option` it passes is declared in the code that command runs.

Each checker is a function of the README's text, so that the tests below can show it failing on a
README with a line removed or a name misspelt.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from aqa_core.__main__ import COMMANDS
from aqa_core.study.pipeline.code import code_files

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 120
FIRST_SCREEN = 25
#: The two commands the README's first screen gives (the Makefile's two entry points).
ENTRY_COMMANDS = ("make book", "make test")
#: A module map entry: a list item naming one module by path, then its one-line description.
MAP_ENTRY = re.compile(r"^- `(aqa_core/[\w/]+\.py)`: \S", re.MULTILINE)
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)*)`")
AQA_COMMAND = re.compile(r"-m aqa_core\s+([a-z][\w-]*)(.*)")


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def package_modules(root: Path = ROOT) -> set[str]:
    """Every module of `aqa_core/`, recursively, as a repository-relative path; a package's
    `__init__.py` is left out (the map's paths name its package)."""
    paths = (p.relative_to(root) for p in (root / "aqa_core").rglob("*.py"))
    return {p.as_posix() for p in paths if p.name != "__init__.py" and not any(s.startswith(".") for s in p.parts)}


def module_map(text: str) -> set[str]:
    """The modules the README's "## Module map" section lists (empty when it has none)."""
    _, found, rest = text.partition("\n## Module map\n")
    if not found:
        return set()
    section = re.split(r"^## ", rest, maxsplit=1, flags=re.MULTILINE)[0]
    return set(MAP_ENTRY.findall(section))


def map_problems(text: str, modules: set[str]) -> list[str]:
    """What the module map gets wrong against `modules`: each module it misses, each it names that is gone."""
    listed = module_map(text)
    return ([f"missing from the README's module map: {m}" for m in sorted(modules - listed)]
            + [f"in the README's module map but not in aqa_core/: {m}" for m in sorted(listed - modules)])


def bash_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) of every line inside a ```bash block."""
    found, in_block, language = [], False, ""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            in_block, language = (False, "") if in_block else (True, line[3:].strip())
        elif in_block and language == "bash":
            found.append((number, line))
    return found


def first_screen_commands(text: str, lines: int = FIRST_SCREEN) -> set[str]:
    """Which of ENTRY_COMMANDS a ```bash block runs within the first `lines` lines (comments ignored)."""
    run = {" ".join(line.split("#", 1)[0].split()[:2]) for number, line in bash_lines(text) if number <= lines}
    return run & set(ENTRY_COMMANDS)


def code_texts(text: str) -> list[str]:
    """Every command-like text of the README: each line of a fenced block (backslash continuations
    joined) and each inline code span outside the fences, whitespace made single spaces."""
    texts = []
    for match in FENCE.finditer(text):
        texts += [line for line in match.group(2).replace("\\\n", " ").splitlines() if line.strip()]
    texts += INLINE_CODE.findall(FENCE.sub("", text))
    return [" ".join(t.split()) for t in texts]


def shell_commands(text: str) -> list[list[str]]:
    """The simple commands of every code text, as words: comments dropped, split at ; && || |."""
    commands = []
    for code in code_texts(text):
        code = re.sub(r"(^|\s)#.*", "", code)
        for part in re.split(r"&&|\|\||[;|]", code):
            try:
                words = shlex.split(part)
            except ValueError:  # an unbalanced quote in prose-like code: taken word by word
                words = part.split()
            if words:
                commands.append(words)
    return commands


def make_targets(text: str) -> set[str]:
    """The targets of every `make ...` the README shows (variable assignments and options skipped)."""
    targets = set()
    for words in shell_commands(text):
        for i, word in enumerate(words):
            if word == "make":
                targets.update(w for w in words[i + 1:] if "=" not in w and not w.startswith("-"))
    return targets


def makefile_targets(makefile: str) -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", makefile, flags=re.MULTILINE))


def aqa_commands(text: str) -> list[tuple[str, list[str]]]:
    """(command, its --options) of every `python -m aqa_core COMMAND ...` the README shows, and of
    every code text that starts with a command's name and has options (`study --list`)."""
    found = []
    for code in code_texts(text):
        code = re.sub(r"(^|\s)#.*", "", code)
        calls = [(m.group(1), m.group(2)) for m in AQA_COMMAND.finditer(code)]
        first, _, rest = code.partition(" ")
        if not calls and first in COMMANDS and rest:
            calls = [(first, rest)]
        for command, tail in calls:
            options = re.findall(r"(?:^|\s)(--[a-z][\w-]*)", re.split(r"&&|\|\||[;|]", tail)[0])
            found.append((command, options))
    return found


def command_problems(text: str) -> list[str]:
    """Commands the README shows that `python -m aqa_core` lacks, and options their code never declares."""
    problems = []
    for command, options in aqa_commands(text):
        if command not in COMMANDS:
            problems.append(f"python -m aqa_core {command}: no such command ({', '.join(COMMANDS)})")
            continue
        source = "".join((ROOT / f).read_text(encoding="utf-8") for f in code_files([COMMANDS[command][0]]))
        problems += [f"python -m aqa_core {command} {option}: no such option in its code"
                     for option in options if f'"{option}"' not in source]
    return problems


# ----------------------------------------------------------------------------- the README itself

def test_readme_is_at_most_120_lines():
    assert len(readme_text().splitlines()) <= MAX_LINES


def test_first_screen_runs_both_commands_in_a_bash_block():
    assert first_screen_commands(readme_text()) == set(ENTRY_COMMANDS)


def test_module_map_names_every_module():
    modules = package_modules()
    assert "aqa_core/study/pipeline/study.py" in modules and "aqa_core/__main__.py" in modules
    assert map_problems(readme_text(), modules) == []


def test_every_make_target_exists():
    named = make_targets(readme_text())
    assert {"book", "test"} <= named
    assert named - makefile_targets((ROOT / "Makefile").read_text(encoding="utf-8")) == set()


def test_every_aqa_core_command_and_option_exists():
    text = readme_text()
    assert {"study", "archive", "sweep"} <= {command for command, _ in aqa_commands(text)}
    assert command_problems(text) == []


# ----------------------------------------------------------------------------- the checkers can fail

def test_a_module_left_out_of_the_map_is_named():
    text, modules = readme_text(), package_modules()
    module = "aqa_core/study/pipeline/runner.py"
    assert module in modules
    line = next(line for line in text.splitlines() if line.startswith(f"- `{module}`: "))
    assert map_problems(text.replace(line + "\n", ""), modules) == [f"missing from the README's module map: {module}"]


def test_a_module_that_is_gone_is_named():
    text, modules = readme_text(), package_modules()
    module = "aqa_core/files.py"
    assert module in modules
    text = text.replace(f"- `{module}`: ", "- `aqa_core/filez.py`: ")
    assert map_problems(text, modules) == [f"missing from the README's module map: {module}",
                                           "in the README's module map but not in aqa_core/: aqa_core/filez.py"]


def test_a_readme_without_a_module_map_misses_every_module():
    text = readme_text().replace("## Module map", "## Modules")
    assert len(map_problems(text, package_modules())) == len(package_modules())


@pytest.mark.parametrize("text, found", [
    ("# x\n\n```bash\nmake book   # all\nmake test\n```\n", {"make book", "make test"}),
    ("# x\n\n```\nmake book\nmake test\n```\n", set()),                      # not a bash block
    ("# x\n\n`make book` and `make test`\n", set()),                         # inline, not a block
    ("# x\n\n```bash\nmake book\n```\n" + "\n" * 30 + "```bash\nmake test\n```\n", {"make book"}),  # too far down
    ("# x\n\n```bash\n# make book\nmake test\n```\n", {"make test"}),       # a comment runs nothing
])
def test_first_screen_commands(text, found):
    assert first_screen_commands(text) == found


def test_make_targets_are_read_from_blocks_and_spans():
    text = ("```bash\nmake book STUDY_ARGS=--prompt3 && make -j2 test-fast  # make nothing\n```\n"
            "Run `make lint`, or make sense of it.\n")
    assert make_targets(text) == {"book", "test-fast", "lint"}
    assert make_targets("`make bok`") - makefile_targets((ROOT / "Makefile").read_text(encoding="utf-8")) == {"bok"}


def test_makefile_targets():
    assert makefile_targets("VPY := x\n.PHONY: a\nbook: $(STAMP)\n\tcmd\n$(VPY):\ntest-fast: lint\n") == {
        ".PHONY", "book", "test-fast"}


def test_a_wrong_command_or_option_is_named():
    text = ("```bash\npython -m aqa_core sweep --run R --include-base \\\n    --validation-limt 200  # --not-this\n"
            "python -m aqa_core trian --recipe r.yaml\n```\n"
            "`python -m aqa_core archive --show A`, then `study --lst`\n")
    assert command_problems(text) == [
        "python -m aqa_core sweep --validation-limt: no such option in its code",
        f"python -m aqa_core trian: no such command ({', '.join(COMMANDS)})",
        "python -m aqa_core study --lst: no such option in its code"]
