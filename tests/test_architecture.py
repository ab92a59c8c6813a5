"""The package's layout rules, read from the source: dependency direction, no private names
across modules, no import cycles, torch-free analysis, module sizes, no bare builtin exception
raised, and dotted ``seqacts.`` references that name real objects."""

from __future__ import annotations

import ast
import builtins
import importlib
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seqacts"
ROOTS = [PACKAGE, PACKAGE.parent / "benchmarks", PACKAGE.parent / "examples"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".")
    if not MODULES[module].name == "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, top_level_only: bool = False) -> list[tuple[str, list[str]]]:
    """``(imported module, names)`` for every import in ``module``."""
    tree = TREES[module]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            names = [a.name for a in node.names]
            found.append((target, names))
            for name in names:  # `from . import kernels` imports a module
                if f"{target}.{name}" in MODULES:
                    found.append((f"{target}.{name}", []))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("seqacts.capture")])
def test_capture_depends_on_nothing_above_it(module: str) -> None:
    above = ("seqacts.io", "seqacts.analysis", "seqacts.viz", "seqacts.interventions",
             "seqacts.cli", "seqacts.demo", "seqacts.accessor")
    bad = [t for t, _ in _imports(module) if t.startswith(above)]
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize(
    "module", [m for m in MODULES if m.startswith("seqacts.analysis") or m == "seqacts.schema"]
)
def test_analysis_and_schema_need_no_torch(module: str) -> None:
    bad = [t for t, _ in _imports(module) if t == "torch" or t.startswith(("torch.", "seqacts.capture"))]
    assert not bad, f"{module} imports {bad}"


def _private_uses(path: Path, module: str | None) -> list[str]:
    tree = ast.parse(path.read_text())
    aliases: set[str] = set()
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            target = _absolute(module, node) if module and isinstance(node, ast.ImportFrom) else (
                getattr(node, "module", None) or "")
            for a in node.names:
                if isinstance(node, ast.ImportFrom) and a.name.startswith("_") and not (
                    a.name.startswith("__") or target == "__future__"
                ):
                    uses.append(f"from {target} import {a.name}")
                if isinstance(node, ast.Import) and a.name.startswith("seqacts"):
                    aliases.add((a.asname or a.name).split(".")[0])
                elif isinstance(node, ast.ImportFrom) and target.startswith("seqacts"):
                    aliases.add(a.asname or a.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in aliases:
                uses.append(ast.unparse(node))
    return uses


@pytest.mark.parametrize(
    "path",
    [p for root in ROOTS for p in sorted(root.rglob("*.py"))],
    ids=lambda p: str(p.relative_to(PACKAGE.parent)),
)
def test_no_private_name_crosses_a_module_border(path: Path) -> None:
    module = _module_name(path) if path.is_relative_to(PACKAGE) else None
    assert _private_uses(path, module) == []


def test_no_import_cycles() -> None:
    graph = {
        m: {t for t, _ in _imports(m) if t in MODULES and t != m and not (
            m.startswith(t + ".") and MODULES[t].name == "__init__.py")}
        for m in MODULES
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


#: Where kinds are declared: the registry and its built-in kinds, the torch side of each kind,
#: and the schema (which derives its tables from the registry).
KIND_HOMES = ("seqacts.kinds", "seqacts.kinds.registry", "seqacts.kinds.builtin",
              "seqacts.capture.modules", "seqacts.schema", "seqacts.kinds.keras_kinds")
RECURRENT_CLASSES = {"RNNBase", "RNNCellBase", "LSTMCell", "GRUCell", "RNNCell"}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


@pytest.mark.parametrize("module", [m for m in MODULES if m not in KIND_HOMES])
def test_no_kind_literal_outside_the_registry(module: str) -> None:
    """A kind is a registered object: code asks the registry (``has_cell_state(kind)``,
    ``module_kind(m)``) instead of comparing with ``"LSTM"`` or checking ``nn.RNNBase``."""
    from seqacts.kinds import registered_kinds

    kinds = set(registered_kinds())
    tree = TREES[module]
    docs = _docstrings(tree)
    literals = [node.value for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and isinstance(node.value, str)
                and node.value in kinds and id(node) not in docs]
    classes = [f"nn.{node.attr}" for node in ast.walk(tree)
               if isinstance(node, ast.Attribute) and node.attr in RECURRENT_CLASSES]
    assert not literals and not classes, f"{module} names kinds {literals + classes}"


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("seqacts.kinds")])
def test_kinds_need_no_torch(module: str) -> None:
    bad = [t for t, _ in _imports(module) if t == "torch" or t.startswith(("torch.", "seqacts.capture"))]
    assert not bad, f"{module} imports {bad}"


MAX_LINES = 400
#: Modules past MAX_LINES while the change that splits them is under way, with that change.
OVERSIZE_PENDING = {
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_past_the_size_limit(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    if module in OVERSIZE_PENDING:
        return
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by job (STYLE.md rule 1)"


def test_the_oversize_list_names_only_oversize_modules() -> None:
    fine = [m for m in OVERSIZE_PENDING
            if m not in MODULES or len(MODULES[m].read_text().splitlines()) <= MAX_LINES]
    assert not fine, f"{fine} fit {MAX_LINES} lines now: take them off OVERSIZE_PENDING"


def _builtin_raises(tree: ast.AST, function: str = "") -> list[str]:
    """``raise`` (or ``return``, for error factories) of a builtin exception class, outside the
    ``__getattr__`` protocol (which must raise AttributeError)."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += _builtin_raises(node, node.name)
            continue
        value = node.exc if isinstance(node, ast.Raise) else (
            node.value if isinstance(node, ast.Return) else None)
        call = value.func if isinstance(value, ast.Call) else value
        if isinstance(call, ast.Name) and call.id in BUILTIN_ERRORS and not (
                call.id == "NotImplementedError"
                or (function == "__getattr__" and call.id == "AttributeError")):
            found.append(f"line {node.lineno}: {call.id}")
        found += _builtin_raises(node, function)
    return found


BUILTIN_ERRORS = {n for n, v in vars(builtins).items()
                  if isinstance(v, type) and issubclass(v, BaseException)}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_errors_raised_on_purpose_are_seqacts_errors(module: str) -> None:
    """Every error seqacts raises is a SeqactsError subclass (from errors.py) that keeps its
    builtin base, so ``except ValueError`` and ``except seqacts.SeqactsError`` both work."""
    assert _builtin_raises(TREES[module]) == [], f"{module} raises a bare builtin exception"


_REFERENCE = re.compile(r"(?<![\w/.])seqacts((?:\.[A-Za-z_]\w*)+)")


def _resolves(ref: str) -> bool:
    parts = ref.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in MODULES:
            obj: object = importlib.import_module(".".join(parts[:k]))
            for name in parts[k:]:
                if not hasattr(obj, name):
                    return False
                obj = getattr(obj, name)
            return True
    return False


def test_every_dotted_seqacts_reference_in_the_source_names_a_real_object() -> None:
    """Docstrings and comments name modules by their real paths (``seqacts.capture.chains``,
    not the old flat ``seqacts.chains``), and objects that exist."""
    bad = [f"{path.relative_to(PACKAGE.parent)}:{i}: {ref}"
           for root in ROOTS for path in sorted(root.rglob("*.py"))
           for i, line in enumerate(path.read_text().splitlines(), 1)
           for ref in ("seqacts" + m.group(1) for m in _REFERENCE.finditer(line))
           if not _resolves(ref)]  # fmt: skip
    assert bad == []


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("seqacts.keras")])
def test_keras_front_end_depends_on_nothing_above_capture(module: str) -> None:
    above = ("seqacts.io", "seqacts.analysis", "seqacts.viz", "seqacts.interventions",
             "seqacts.cli", "seqacts.demo", "seqacts.accessor")
    bad = [t for t, _ in _imports(module) if t.startswith(above)]
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", [m for m in MODULES if not m.startswith("seqacts.keras")])
def test_only_the_keras_front_end_imports_keras_at_module_level(module: str) -> None:
    """``import seqacts`` must not import keras: the rest of the package reaches the front end
    through ``seqacts.keras.is_keras_model`` (keras-free) and imports it in a function."""
    top = [t for t, names in _imports(module, top_level_only=True)
           if t.split(".")[0] in ("keras", "tensorflow", "jax")
           or (t.startswith("seqacts.keras") and (t != "seqacts.keras" or names != ["is_keras_model"]))]
    assert not top, f"{module} imports {top} at module level"


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("seqacts.viewer")])
def test_viewer_needs_no_torch_and_nothing_above_analysis_but_the_cli_helpers(module: str) -> None:
    bad = [t for t, _ in _imports(module) if t == "torch" or t.startswith((
        "torch.", "seqacts.capture", "seqacts.interventions", "seqacts.viz", "seqacts.cli"))]
    assert not bad, f"{module} imports {bad}"
    users = [m for m in MODULES if not m.startswith("seqacts.viewer") and any(
        t.startswith("seqacts.viewer") for t, _ in _imports(m))]
    assert set(users) <= {"seqacts", "seqacts.cli"}, users
