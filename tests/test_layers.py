"""The layering rules of ARCHITECTURE.md, checked from the code's own imports (parsed with ast),
so that they stay true after the next change."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from reranker.arch import ARCHES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "reranker"
GENERATED = PACKAGE / "v1"

SERVING = (
    "arch",
    "artifact",
    "client",
    "config",
    "engine",
    "errors",
    "fusion",
    "kit",
    "manifest",
    "provision",
    "runtime",
    "server",
    "store",
    "tokenization",
)
"""Parts of the package the ``serve`` install runs (no torch)."""
TORCH = ("torch", "transformers", "safetensors.torch")
"""What serving never imports (safetensors' numpy reader is allowed: it needs no torch)."""
SERVER_MAY_IMPORT = ("reranker.engine", "reranker.errors", "reranker.server", "reranker.v1")
"""The transport sees the engine's public face, the errors and the API; nothing below the engine."""
SERVER_NEVER = ("reranker.runtime", "reranker.store", "reranker.artifact", "reranker.data", "onnxruntime", *TORCH)


def modules(root: Path = PACKAGE) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        if GENERATED not in path.parents:
            yield path


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


@cache
def imports_of(path: Path) -> frozenset[str]:
    """Every module ``path`` imports, anywhere in the file (inside functions too), fully qualified;
    ``from package import submodule`` counts as importing the submodule."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names if _exists(f"{module}.{a.name}"))
    return frozenset(found)


def part_of(module: str) -> str | None:
    """``reranker.engine.served`` -> ``engine``; ``reranker`` (its __init__) -> ``reranker``; None outside."""
    pieces = module.split(".")
    if pieces[0] != "reranker":
        return None
    return pieces[1] if len(pieces) > 1 else "reranker"


def part_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in modules():
        src = part_of(module_name(path))
        assert src is not None
        targets = {part_of(m) for m in imports_of(path)} - {None, src}
        graph.setdefault(src, set()).update(t for t in targets if t is not None)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_between_the_parts_of_the_package() -> None:
    graph = part_graph()
    assert {"server", "engine", "runtime", "store", "arch"} <= set(graph)
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_server_is_transport_only() -> None:
    for path in modules(PACKAGE / "server"):
        for module in imports_of(path):
            assert not module.startswith(SERVER_NEVER), f"{path.relative_to(ROOT)} imports {module}"
            if module.startswith("reranker."):
                allowed = module in SERVER_MAY_IMPORT or module.startswith(tuple(f"{m}." for m in SERVER_MAY_IMPORT))
                public = not module.startswith("reranker.engine.") or _is_public_engine_name(module)
                assert allowed and public, (
                    f"{path.relative_to(ROOT)} imports {module} (the server may import only "
                    f"{', '.join(SERVER_MAY_IMPORT)}, and the engine only from its package)"
                )


def _is_public_engine_name(module: str) -> bool:
    """``reranker.engine.X`` where X is a name the engine package exports (not one of its modules)."""
    return not _exists(module)


def test_serving_never_imports_torch_models_or_training() -> None:
    graph = part_graph()
    reach: set[str] = set()
    todo = [p for p in SERVING if p in graph]
    while todo:
        part = todo.pop()
        if part not in reach:
            reach.add(part)
            todo.extend(graph.get(part, ()))
    assert not reach & {"models", "training", "cli", "eval"}, sorted(reach)
    for path in modules():
        if part_of(module_name(path)) in reach:
            heavy = sorted(m for m in imports_of(path) if m.split(".")[0] in TORCH or m.startswith(TORCH))
            assert not heavy, f"{path.relative_to(ROOT)} (serving) imports {heavy}"


def test_models_training_and_teachers_never_import_serving_code() -> None:
    serving = (
        "reranker.server",
        "reranker.engine",
        "reranker.runtime",
        "reranker.store",
        "reranker.cli",
        "reranker.provision",
        "reranker.client",
        "onnxruntime",
        "grpc",
    )
    for sub in ("models", "training", "teachers"):
        for path in modules(PACKAGE / sub):
            bad = sorted(m for m in imports_of(path) if m.startswith(serving))
            assert not bad, f"{path.relative_to(ROOT)} imports serving code {bad}"


def test_the_store_reader_needs_only_numpy() -> None:
    for name in ("reader.py", "codec.py"):  # the reader and the codecs it decodes with
        for module in imports_of(PACKAGE / "store" / name):
            top = module.split(".")[0]
            assert top in ("__future__", "dataclasses", "pathlib", "typing", "numpy", "reranker"), module
            assert not module.startswith(
                (
                    "reranker.runtime",
                    "reranker.engine",
                    "reranker.store.build",
                    "reranker.store.compress",
                    "reranker.store.distributed",
                )
            ), module


def _arch_comparisons(path: Path) -> list[int]:
    """Lines of ``path`` that compare with an architecture name literal (==, !=, in, match)."""
    names = set(ARCHES)

    def is_name(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in names
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return any(is_name(e) for e in node.elts)
        return False

    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        compared = isinstance(node, ast.Compare) and any(is_name(n) for n in (node.left, *node.comparators))
        matched = isinstance(node, ast.MatchValue) and is_name(node.value)
        if compared or matched:
            lines.append(node.lineno)
    return lines


def test_architecture_names_are_compared_in_at_most_two_files() -> None:
    found = {
        str(p.relative_to(ROOT)): lines
        for folder in ("reranker", "export", "benchmarks", "studies")
        for p in modules(ROOT / folder)
        if (lines := _arch_comparisons(p))
    }
    assert len(found) <= 2, f"architecture names are compared in {found}; ask reranker.arch.spec() instead"


@pytest.mark.parametrize("path", list(modules()), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_300_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 300, f"{path.relative_to(ROOT)} has {lines} lines; split it"


def test_export_is_imported_under_its_installed_name_only() -> None:
    """The top-level folder export/ installs as ``reranker_export``, never as a bare ``export``."""
    for folder in ("reranker", "export", "benchmarks", "studies", "tests"):
        for path in modules(ROOT / folder):
            bare = sorted(m for m in imports_of(path) if m == "export" or m.startswith("export."))
            assert not bare, f"{path.relative_to(ROOT)} imports {bare}; use reranker_export"


@pytest.mark.parametrize("folder", ["benchmarks", "studies"])
def test_benchmarks_and_studies_are_packages_without_path_edits(folder: str) -> None:
    for path in modules(ROOT / folder):
        assert (path.parent / "__init__.py").is_file(), f"{path.parent.relative_to(ROOT)} is not a package"
        assert "sys.path" not in path.read_text(encoding="utf-8"), f"{path.relative_to(ROOT)} edits sys.path"


def test_each_study_has_a_readme_and_dated_results() -> None:
    """studies/NAME/: a driver (``python -m studies.NAME`` or a script), a README, results named YYYY-MM-DD-*."""
    studies = [d for d in (ROOT / "studies").iterdir() if d.is_dir() and (d / "__init__.py").is_file()]
    assert len(studies) >= 5
    for study in studies:
        assert (study / "README.md").is_file(), f"{study.relative_to(ROOT)} has no README.md"
        for result in (study / "results").glob("*") if (study / "results").is_dir() else []:
            assert re.match(r"\d{4}-\d\d-\d\d-", result.name), f"{result.relative_to(ROOT)} is not named by its date"


def test_the_product_benchmarks_never_import_the_studies() -> None:
    """One way only: a study may use the benchmark harness (benchmarks._common), never the reverse."""
    for path in modules(ROOT / "benchmarks"):
        found = sorted(m for m in imports_of(path) if m == "studies" or m.startswith("studies."))
        assert not found, f"{path.relative_to(ROOT)} imports {found}"


def test_benchmark_and_study_modules_import(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    names = [module_name(p) for folder in ("benchmarks", "studies") for p in modules(ROOT / folder)]
    assert "studies.peers.__main__" in names and "benchmarks.latency" in names
    code = "import importlib\n" + "".join(f"importlib.import_module({n!r})\n" for n in sorted(names))
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def module_graph() -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (a package's name stands for its __init__)."""
    names = {module_name(p) for p in modules()}
    graph: dict[str, set[str]] = {}
    for path in modules():
        src = module_name(path)
        graph[src] = {m for m in imports_of(path) if m in names and m != src}
    return graph


def test_no_import_cycle_between_modules() -> None:
    """Finer than between parts: two modules of one part may not import each other either (directly or
    through others), e.g. two command modules of the CLI."""
    graph = module_graph()
    lazy = {("reranker.cli", m) for m in graph if m.startswith("reranker.cli.")}  # the CLI's registry of commands
    graph = {src: {dst for dst in dsts if (src, dst) not in lazy} for src, dsts in graph.items()}
    assert "reranker.engine.engine" in graph
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_nothing_committed_is_a_symlink_or_names_a_machine_path() -> None:
    files = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    if not files:
        pytest.skip("not a git checkout")
    links = [line.split("\t", 1)[1] for line in files.splitlines() if line.startswith("120000")]
    assert not links, f"symlinks committed: {links}"
    pattern = ("/" + "work/", "/" + "root/", "/" + "home/", "site-" + "packages/", "/" + "tmp/")
    offenders = []
    for line in files.splitlines():
        name = line.split("\t", 1)[1]
        path = ROOT / name
        if path.suffix not in (".json", ".md", ".toml", ".txt", ".yaml", ".yml", ".cfg") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{name}: {p}" for p in pattern if f'"{p}' in text or f" {p}" in text]
    assert not offenders, offenders
