"""Which source files a module runs: the closure of its `aqa_core` imports, read from the source
(no import happens). The study's stage cache hashes these files, so a stage reruns exactly when
code it runs changed; `tests/test_layout.py` checks the package's import rules on the same graph.

>>> "aqa_core/answers.py" in code_files(["aqa_core.rewards"])
True
>>> "aqa_core/train/grpo.py" in code_files(["aqa_core.rewards"])
False
"""
from __future__ import annotations

import ast
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

PACKAGE = "aqa_core"
PACKAGE_DIR = Path(__file__).resolve().parents[2]
REPO = PACKAGE_DIR.parent


def module_path(name: str) -> Path:
    """The source file of a module of the package (a package's `__init__.py`)."""
    rel = Path(*name.split("."))
    if (REPO / rel).is_dir():
        return REPO / rel / "__init__.py"
    return REPO / rel.with_suffix(".py")


def _is_module(name: str) -> bool:
    return name.split(".")[0] == PACKAGE and module_path(name).is_file()


def all_modules() -> list[str]:
    """Every module of the package, by dotted name."""
    return sorted(".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                  for p in PACKAGE_DIR.rglob("*.py"))


def import_from_target(node: ast.ImportFrom, package: str) -> str:
    """The module a `from X import ...` statement reads, relative imports resolved against
    `package` (the dotted package of the file holding the statement)."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def imports_of(name: str) -> set[str]:
    """The package's modules that module `name` imports anywhere in its source (at the top, in
    a function, under `if`): `import aqa_core.x`, `from aqa_core.x import y`, `from .x import y`,
    `from .. import x` (x a module)."""
    path = module_path(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if _is_module(a.name))
        elif isinstance(node, ast.ImportFrom):
            target = import_from_target(node, package)
            if not target.startswith(PACKAGE):
                continue
            if _is_module(target):
                found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}"))
    found.discard(name)
    return found


@lru_cache(maxsize=1)
def import_graph() -> dict[str, frozenset[str]]:
    """Module -> the package's modules it imports, for the whole package."""
    return {m: frozenset(imports_of(m)) for m in all_modules()}


def closure(modules: Iterable[str]) -> list[str]:
    """The modules reachable from `modules` by imports, with the packages that contain them."""
    graph = import_graph()
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # packages' __init__ run first
        todo += graph.get(m, frozenset())
    return sorted(seen)


def runs_code(name: str) -> bool:
    """False for a module that holds only a docstring and constants (a package's `__init__.py`):
    editing it cannot change what a stage computes."""
    tree = ast.parse(module_path(name).read_text(encoding="utf-8"))
    inert = all((isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
                or (isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)) for n in tree.body)
    return not inert


def code_files(modules: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """Repository-relative source files of `closure(modules)` that run code, plus `extra` files
    (data the code reads, e.g. `aqa_core/mini/tokenizer_corpus.txt`)."""
    files = {str(module_path(m).relative_to(REPO)) for m in closure(modules) if runs_code(m)}
    return sorted(files | set(extra))
