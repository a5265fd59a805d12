"""The package's architecture, enforced on its source (an AST scan of every import, at the top of
a file or inside a function):

- the top-level modules (the paper's definitions, the file formats every stage shares) import
  none of the subpackages;
- `train/` and `eval/` never import `mini/` or `study/`; `mini/` never imports `study/`;
- the study's analysis (every module of `study/` outside `study/pipeline/`) never imports the
  pipeline: it reads the design (`study/design.py`) and the files the runs wrote;
- no two modules import each other, directly or around a circle;
- no module keeps names for others to import from it (re-export shims), and no piece is defined
  twice;
- every `python -m aqa_core` command and every study stage points at code that exists.
"""
from __future__ import annotations

import ast
import functools
from collections import defaultdict

import pytest

from aqa_core.__main__ import COMMANDS
from aqa_core.study.pipeline.code import PACKAGE_DIR, REPO, all_modules, import_from_target, import_graph, module_path

SUBPACKAGES = ("train", "eval", "mini", "study")
#: layer -> the layers it must never import
FORBIDDEN = {"top": set(SUBPACKAGES), "train": {"mini", "study"}, "eval": {"mini", "study"}, "mini": {"study"},
             "analysis": {"pipeline"}}
PIPELINE = "aqa_core.study.pipeline"


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in SUBPACKAGES) else "top"


def study_layer(module: str) -> str | None:
    """"pipeline" or "analysis" for a module of `study/`, else None."""
    if not module.startswith("aqa_core.study"):
        return None
    return "pipeline" if module == PIPELINE or module.startswith(PIPELINE + ".") else "analysis"


def violations(graph: dict[str, set[str] | frozenset[str]]) -> list[str]:
    """'a imports b' for every import the layer rules forbid (`__main__` dispatches by name only)."""
    return sorted(f"{a} imports {b}" for a, deps in graph.items() if a != "aqa_core.__main__"
                  for b in deps if layer(b) in FORBIDDEN.get(layer(a), set())
                  or study_layer(b) in FORBIDDEN.get(study_layer(a) or "", set()))


def cycles(graph: dict[str, set[str] | frozenset[str]]) -> list[list[str]]:
    """Every import circle found by a depth-first walk (one per back edge)."""
    state: dict[str, int] = {}
    found: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                found.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, path)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    return found


def test_layer_rules_hold():
    assert violations(import_graph()) == []


@pytest.mark.parametrize("importer,imported", [
    ("aqa_core.prompts", "aqa_core.train.grpo"),
    ("aqa_core.data", "aqa_core.eval"),
    ("aqa_core.train.grpo", "aqa_core.mini.model"),
    ("aqa_core.eval.sweep", "aqa_core.study.results"),
    ("aqa_core.mini.data", "aqa_core.study.pipeline.stages"),
    ("aqa_core.study.tables", "aqa_core.study.pipeline.runner"),
    ("aqa_core.study.design", "aqa_core.study.pipeline.stages"),
])
def test_a_forbidden_import_is_caught(importer, imported):
    graph = {m: set(deps) for m, deps in import_graph().items()}
    graph[importer].add(imported)
    assert violations(graph) == [f"{importer} imports {imported}"]


def test_the_scan_sees_imports_inside_functions(tmp_path, monkeypatch):
    """A lazy import counts like a top-level one (the old mmau <-> mmau_versions circle was lazy)."""
    from aqa_core.study.pipeline import code

    pkg = tmp_path / "aqa_core"
    (pkg / "eval").mkdir(parents=True)
    for f in ("__init__.py", "eval/__init__.py", "eval/mmau.py"):
        (pkg / f).write_text("")
    (pkg / "eval" / "mmau_versions.py").write_text("def f():\n    from .mmau import read_json\n")
    monkeypatch.setattr(code, "REPO", tmp_path)
    assert code.imports_of("aqa_core.eval.mmau_versions") == {"aqa_core.eval.mmau"}


def test_no_import_cycles():
    assert cycles(import_graph()) == []
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]


@functools.cache
def _defined(module: str) -> frozenset[str]:
    """Names a module defines at its top level (functions, classes, assignments)."""
    out: set[str] = set()
    for node in ast.parse(module_path(module).read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out.update(t.id for t in targets if isinstance(t, ast.Name))
    return frozenset(out)


def _package_imports(path, tree):
    """(line, module, name, bound name) for every `from <aqa_core module> import name` in a file."""
    rel = path.relative_to(REPO)
    package = ".".join(rel.parent.parts) if rel.parts[0] == "aqa_core" else ""
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        target = import_from_target(node, package)
        if target.split(".")[0] == "aqa_core":
            for a in node.names:
                yield node.lineno, target, a.name, a.asname or a.name


def test_names_are_imported_from_where_they_are_defined():
    """No re-export shims: every `from aqa_core.X import name` (in the package, the tests and the
    scripts) names something X defines, or a module; and no module of the package imports a name
    of the package that it does not use (a name kept for others to import from it)."""
    files = [*PACKAGE_DIR.rglob("*.py"), *(REPO / "tests").glob("*.py"), *(REPO / "scripts").glob("*.py")]
    elsewhere, unused = [], []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        for line, module, name, bound in _package_imports(path, tree):
            where = f"{path.relative_to(REPO)}:{line}"
            if module_path(f"{module}.{name}").is_file():
                continue  # a module, imported as one
            if name not in _defined(module):
                elsewhere.append(f"{where}: {name} from {module}")
            elif path.is_relative_to(PACKAGE_DIR) and bound not in used:
                unused.append(f"{where}: {name}")
    assert elsewhere == []
    assert unused == []
    assert not [p for p in PACKAGE_DIR.rglob("*.py") if "noqa: F401" in p.read_text(encoding="utf-8")]


#: Names defined at the top of more than one module on purpose.
SAME_NAME_OK = {
    "cli": "every command's entry point",
    "log": "each module's logger",
    "_trainer_class": "the GRPO and SFT trainers, private to their runners",
    "check_recipe": "each runner's own recipe checks (GRPORecipe, SFTRecipe)",
    "sweep": "a checkpoint sweep (eval.sweep) and a frequency sweep (mini.synth)",
    "wilson_interval": "eval.stats' fraction-and-confidence front of the scorer's one formula",
}


def test_no_piece_is_defined_twice():
    defined: dict[str, list[str]] = defaultdict(list)
    for m in all_modules():
        for name in _defined(m):
            defined[name].append(m)
    twice = {name: mods for name, mods in defined.items() if len(mods) > 1 and name not in SAME_NAME_OK}
    assert twice == {}


def test_commands_point_at_their_code():
    for name, (module, _) in COMMANDS.items():
        tree = ast.parse(module_path(module).read_text(encoding="utf-8"))
        entry = "cli_" + name.replace("-", "_")
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)} | \
            {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        assert entry in names or "cli" in names, f"{module} has no cli for {name!r}"


def test_study_stages_hash_files_that_exist():
    from aqa_core.study.pipeline.stages import stage_code

    CODE = stage_code()

    for kind, files in CODE.items():
        missing = [f for f in files if not (REPO / f).is_file()]
        assert missing == [], kind
    assert "aqa_core/train/grpo_trainer.py" in CODE["grpo"] and "aqa_core/rewards.py" in CODE["grpo"]
    assert "aqa_core/train/grpo.py" not in CODE["sft"]
    # docstring-only files (package __init__s) are left out: editing them reruns nothing
    assert not any(f.endswith("__init__.py") for files in CODE.values() for f in files)
