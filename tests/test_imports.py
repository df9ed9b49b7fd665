"""The package's import graph: no circle, counting the imports inside functions and under
``TYPE_CHECKING`` (a circle hidden that way still ties the modules together, and breaks the day
someone moves the import up). An arrow runs from a file to each jaxseq file it imports: ``import
a.b`` and ``from a import b`` name ``a/b.py`` (or ``a/b/__init__.py``) where that exists, else
``a/__init__.py``."""

import ast
from pathlib import Path

import jaxseq

ROOT = Path(jaxseq.__file__).parent


def _module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every file of the package."""
    files = {}
    for path in ROOT.rglob("*.py"):
        parts = ("jaxseq", *path.relative_to(ROOT).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _imported(path: Path, name: str, files: dict[str, Path]) -> set[str]:
    """The package's modules that the file ``path`` (module ``name``) imports anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in files and t != name)
    return found


def _circle(graph: dict[str, set[str]]) -> list[str]:
    """One circle of ``graph`` as a path of names (first == last), or [] when there is none."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_package_has_no_import_circle():
    files = _module_files()
    graph = {name: _imported(path, name, files) for name, path in files.items()}
    assert {"jaxseq.config", "jaxseq.configure", "jaxseq.engine"} <= set(graph)
    assert "jaxseq.contracts" in graph["jaxseq.engine"]  # the parser sees the arrows
    assert _circle(graph) == [], " -> ".join(_circle(graph))


def test_the_circle_finder_finds_one():
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": set()}) == []


def test_the_config_schema_is_a_leaf_of_the_package():
    """``jaxseq.config`` imports no module that owns a choice (only the sweep's normaliser and the
    error type), so every module can import it."""
    files = _module_files()
    assert _imported(files["jaxseq.config"], "jaxseq.config", files) <= {"jaxseq", "jaxseq.sweep", "jaxseq.errors"}
