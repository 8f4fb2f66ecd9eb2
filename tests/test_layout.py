"""The house rules of the layout, read from the source: entry scripts at the root and in scripts/, one library
package `rre` below them, imports running one way (entry -> reward_model -> rre), no cycles, and no project
import hidden inside a function to dodge one."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = "rre"
PAPER_MODULE = "reward_model"  # the paper's module at the root: the white-box proxy, imported by the scripts


# scripts/ holds shell chains and maintenance tools; every Python command a user runs is at the root.
MAINTENANCE_SCRIPTS = {"write_flag_docs"}


def entry_scripts() -> dict[str, Path]:
    """Commands a user runs (the root's .py files except the paper's reward module) and the maintenance tools."""
    found = {p.stem: p for p in ROOT.glob("*.py") if p.stem != PAPER_MODULE}
    found.update({p.stem: p for p in (ROOT / "scripts").glob("*.py")})
    return found


def library_modules() -> dict[str, Path]:
    mods = {f"{PACKAGE}.{p.stem}": p for p in (ROOT / PACKAGE).glob("*.py") if p.stem != "__init__"}
    mods[PAPER_MODULE] = ROOT / f"{PAPER_MODULE}.py"
    return mods


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function?, line) for every import statement of a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, in_function, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                if child.module == PACKAGE:  # `from rre import validation` imports rre.validation
                    out.extend((f"{PACKAGE}.{a.name}", in_function, child.lineno) for a in child.names)
                else:
                    out.append((child.module, in_function, child.lineno))
            visit(child, nested)

    visit(tree, False)
    return out


def test_package_never_imports_a_root_file_or_script():
    outside = set(entry_scripts()) | {PAPER_MODULE}
    bad = [f"{path.relative_to(ROOT)}:{line} imports {mod}" for name, path in library_modules().items()
           if name.startswith(PACKAGE) for mod, _, line in imports(path) if mod.split(".")[0] in outside]
    assert not bad, bad


def test_no_entry_script_imports_another():
    """(Benchmarks under bench/ may drive a command's own functions: timing them is their job.)"""
    scripts = entry_scripts()
    bad = [f"{path.relative_to(ROOT)}:{line} imports {mod}" for path in scripts.values()
           for mod, _, line in imports(path) if mod in scripts and mod != path.stem]
    assert not bad, bad


def test_no_project_import_inside_a_function():
    """Function-level imports are for heavy optional packages only, never for the project's own modules."""
    own = set(library_modules()) | {PACKAGE}
    files = [*library_modules().values(), *entry_scripts().values()]
    bad = [f"{path.relative_to(ROOT)}:{line} imports {mod} inside a function" for path in files
           for mod, inside, line in imports(path) if inside and mod in own]
    assert not bad, bad


def test_library_imports_have_no_cycle():
    modules = library_modules()
    graph = {name: {m for m, _, _ in imports(path) if m in modules and m != name} for name, path in modules.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := cycle_from(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            found = cycle_from(name, [])
            assert found is None, " -> ".join(found)


def test_the_detector_sees_a_planted_cycle_and_a_hidden_import(tmp_path):
    """The rules above would pass on a parser that saw nothing: check it sees both forms."""
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef f():\n    from rre.data import DataError\n    import reward_model\n")
    assert imports(f) == [("os", False, 1), ("rre.data", True, 4), ("reward_model", True, 5)]


# The tests' own scaffolding lives in tests/helpers.py, once: the repository root, the environment and runner of
# the commands they start, the accelerate launch lines, the tiny Llama configuration.
SHARED_SCAFFOLDING = {"ROOT", "ENV", "run_cli", "tiny_llama_config"}
LAUNCH = ("accelerate", "launch")


def own_scaffolding(path: Path) -> list[str]:
    """What a test file defines for itself that tests/helpers.py holds: a top-level ROOT/ENV/run_cli/
    tiny_llama_config, or an accelerate launch line spelled out."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
        else:
            continue
        found += [f"{path.name}:{node.lineno} defines {name}" for name in names if name in SHARED_SCAFFOLDING]
    for node in ast.walk(tree):
        if isinstance(node, ast.List) and tuple(getattr(e, "value", None) for e in node.elts[:2]) == LAUNCH:
            found.append(f"{path.name}:{node.lineno} spells out an accelerate launch line")
    return found


def test_tests_take_their_scaffolding_from_helpers():
    files = [p for p in sorted((ROOT / "tests").glob("*.py")) if p.name != "helpers.py"]
    bad = [finding for path in files for finding in own_scaffolding(path)]
    assert not bad, bad


def test_the_scaffolding_rule_sees_a_planted_copy(tmp_path):
    f = tmp_path / "test_x.py"
    f.write_text('import os\nROOT = 1\nENV: dict = {}\n\ndef run_cli():\n    return ["accelerate", "launch", "x"]\n')
    assert own_scaffolding(f) == ["test_x.py:2 defines ROOT", "test_x.py:3 defines ENV", "test_x.py:5 defines run_cli",
                                  "test_x.py:6 spells out an accelerate launch line"]


# One room for errors (rre/errors.py defines the exception types and turns failures into one line) and one for
# files (rre/files.py parses and writes every JSON, JSONL and CSV file and holds the sha256 fingerprints).
ERRORS_ROOM, FILES_ROOM = "rre/errors.py", "rre/files.py"
FILE_FORMAT_CALLS = {("json", "load"), ("json", "loads"), ("json", "dump"), ("csv", "reader"), ("csv", "writer"),
                     ("csv", "DictReader"), ("csv", "DictWriter")}


def project_code() -> list[Path]:
    """Every Python file of the project except the tests and benchmarks (which build fixtures by hand)."""
    return [p for p in [*ROOT.glob("*.py"), *(ROOT / PACKAGE).glob("*.py"), *(ROOT / "scripts").glob("*.py")]]


def room_breaches(path: Path) -> list[str]:
    """Exception classes defined outside the errors room; JSON/CSV parsed or dumped outside the files room."""
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and rel != ERRORS_ROOM:
            bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
            if any(b.endswith(("Error", "Exception")) for b in bases):
                found.append(f"{rel}:{node.lineno} defines exception {node.name}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and rel != FILES_ROOM:
            owner = getattr(node.func.value, "id", None)
            if (owner, node.func.attr) in FILE_FORMAT_CALLS:
                found.append(f"{rel}:{node.lineno} calls {owner}.{node.func.attr}")
    return found


def test_errors_and_files_each_have_one_room():
    bad = [finding for path in project_code() for finding in room_breaches(path)]
    assert not bad, bad


def test_the_room_rule_sees_a_planted_breach(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import json\n\nclass Oops(ValueError):\n    pass\n\n\ndef f(t):\n    return json.loads(t)\n")
    assert room_breaches(f) == ["x.py:3 defines exception Oops", "x.py:8 calls json.loads"]


def test_user_commands_are_at_the_root():
    assert {p.stem for p in (ROOT / "scripts").glob("*.py")} <= MAINTENANCE_SCRIPTS
