"""The import rules of ``docs/architecture.md``, checked against the code.

The page states the rules as three tables (packages and what each may import; the server's
layers; which module owns each third-party library); this module reads those tables from the
page and every import of every module of the package from its source (top level, inside
functions, under ``TYPE_CHECKING``: an import that only a type checker runs is still an arrow
a reader follows), then checks each import against them, and that the module graph has no
cycle. The rules live in one place, the page; changing one is a change to the page.

The scan is static (``ast``), so it sees imports that a plain ``import`` of the package would
not run, and needs no I/O library installed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs
import pytest

import pubquiz_engine

PACKAGE = "pubquiz_engine"
SOURCE = Path(pubquiz_engine.__file__).parent
DOC = SOURCE.parent / "docs" / "architecture.md"

#: Counted as one module by the cycle check (the page says why).
ONE_NODE = ("server.transport",)


@attrs.frozen
class Import:
    """``importer`` (a module of the package) imports ``target`` (a module name, ours or not)
    at ``line``."""

    importer: str
    target: str
    line: int

    def where(self) -> str:
        return f"{self.importer}:{self.line} imports {self.target}"


# --- reading the code ---------------------------------------------------------------------------


def package_modules(root: Path = SOURCE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, source: str, modules: Mapping[str, object], *,
               is_package: bool = False) -> Iterator[Import]:
    """Every import statement in ``source`` (module ``name``), wherever it stands. A name
    imported from one of our packages is the submodule when there is one (``from
    pubquiz_engine.server import credentials`` imports ``server.credentials``), else the
    package; a module of ours is reduced to the nearest module that exists."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
            yield Import(name, target, node.lineno)


def all_imports() -> list[Import]:
    modules = package_modules()
    found: list[Import] = []
    for name, path in modules.items():
        found.extend(imports_of(name, path.read_text(encoding="utf-8"), modules,
                                is_package=path.name == "__init__.py"))
    return found


def ours(target: str) -> bool:
    return target == PACKAGE or target.startswith(PACKAGE + ".")


def short(module: str) -> str:
    """``pubquiz_engine.server.engine`` -> ``server.engine``; the root stays ``pubquiz_engine``."""
    return module.removeprefix(PACKAGE + ".") if module != PACKAGE else PACKAGE


def package_of(module: str) -> str:
    """The top-level package (or module) of ours that ``module`` belongs to."""
    return short(module).split(".")[0]


def covers(entry: str, module: str) -> bool:
    """A rule's ``entry`` names ``module``: itself, or a package that holds it."""
    name = short(module)
    return name == entry or name.startswith(entry + ".")


# --- reading the page ---------------------------------------------------------------------------


def rule_table(title: str, text: str | None = None) -> dict[str, tuple[str, ...]]:
    """The table between ``<!-- rules: TITLE -->`` and ``<!-- end -->``: first column ->
    the backquoted names of the second."""
    text = DOC.read_text(encoding="utf-8") if text is None else text
    match = re.search(rf"<!-- rules: {re.escape(title)} -->\n(.*?)<!-- end -->", text, re.S)
    assert match is not None, f"docs/architecture.md has no '{title}' rules table"
    table: dict[str, tuple[str, ...]] = {}
    for row in match.group(1).splitlines()[2:]:  # below the header and its rule
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) == 2, f"bad row in the '{title}' table: {row!r}"
        key = cells[0].strip("`")
        table[key] = tuple(re.findall(r"`([^`]+)`", cells[1]))
    assert table, f"the '{title}' table is empty"
    return table


# --- the rules ----------------------------------------------------------------------------------


def package_violations(imports: list[Import], allowed: Mapping[str, tuple[str, ...]]
                       ) -> list[str]:
    bad = []
    for imp in imports:
        if not ours(imp.target):
            continue
        importer, target = package_of(imp.importer), package_of(imp.target)
        if importer == target:
            continue
        if importer not in allowed:
            bad.append(f"{imp.where()}: package {importer} is not in the rules table")
        elif not any(covers(entry, imp.target) for entry in allowed[importer]):
            bad.append(f"{imp.where()}: {importer} may not import {target}")
    return bad


def layer_violations(imports: list[Import], modules: list[str],
                     layers: Mapping[str, tuple[str, ...]]) -> list[str]:
    order = list(layers.values())

    def rank(module: str) -> int | None:
        # The most specific entry wins: ``server`` is the package's __init__ only.
        best: tuple[int, int] | None = None
        for index, entries in enumerate(order):
            for entry in entries:
                if covers(entry, module) and (best is None or len(entry) > best[1]):
                    if entry == package_of(module) and short(module) != entry:
                        continue  # a bare package name is its __init__, not its modules
                    best = (index, len(entry))
        return best[0] if best is not None else None

    bad = [f"{short(m)} is in no layer of the server layers table" for m in modules
           if package_of(m) in ("server", "web") and rank(m) is None]
    for imp in imports:
        if not ours(imp.target) or package_of(imp.target) not in ("server", "web"):
            continue
        if package_of(imp.importer) not in ("server", "web"):
            continue
        mine, theirs = rank(imp.importer), rank(imp.target)
        if mine is not None and theirs is not None and theirs < mine:
            bad.append(f"{imp.where()}: upwards, from layer {list(layers)[mine]!r} to "
                       f"{list(layers)[theirs]!r}")
    return bad


def library_violations(imports: list[Import], owners: Mapping[str, tuple[str, ...]]
                       ) -> list[str]:
    bad = []
    for imp in imports:
        library = imp.target.split(".")[0]
        if library in owners and not any(covers(e, imp.importer) for e in owners[library]):
            bad.append(f"{imp.where()}: only {', '.join(owners[library])} may import {library}")
    return bad


def cycles(imports: list[Import], *, one_node: tuple[str, ...] = ()) -> list[list[str]]:
    """The strongly connected components (of more than one module) of our import graph, a
    module under an entry of ``one_node`` counted as that entry (Tarjan, iterative)."""
    def node(module: str) -> str:
        for entry in one_node:
            if covers(entry, module):
                return entry
        return short(module)

    graph: dict[str, set[str]] = {}
    for imp in imports:
        if ours(imp.target):
            a, b = node(imp.importer), node(imp.target)
            graph.setdefault(b, set())
            if a != b:
                graph.setdefault(a, set()).add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            vertex, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[vertex] = min(low[vertex], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[vertex])
            if low[vertex] == index[vertex]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == vertex:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


# --- the tests ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    found = all_imports()
    # The scan saw real imports, of every kind it must see (so the checks below can fail).
    seen = {(short(i.importer), i.target) for i in found}
    assert ("server.engine", "pubquiz_engine.server.connection") in seen
    assert ("protocol.codec", "msgpack") in seen
    assert ("store", "pubquiz_engine.store.sqlite") in seen  # inside a function
    return found


def test_packages_import_only_what_the_page_allows(imports: list[Import]) -> None:
    allowed = rule_table("packages")
    every = {package_of(m) for m in package_modules()}
    assert sorted(every - set(allowed)) == []  # every package has a row
    assert package_violations(imports, allowed) == []


def test_server_modules_import_only_lower_layers(imports: list[Import]) -> None:
    assert layer_violations(imports, list(package_modules()), rule_table("server layers")) == []


def test_each_library_is_imported_by_its_owner_only(imports: list[Import]) -> None:
    owners = rule_table("libraries")
    for library in ("msgpack", "redis", "psycopg", "sqlite3", "wsproto"):
        assert library in owners
    assert library_violations(imports, owners) == []


def test_the_import_graph_has_no_cycle(imports: list[Import]) -> None:
    assert cycles(imports, one_node=ONE_NODE) == []


def test_no_part_of_the_server_imports_the_engine(imports: list[Import]) -> None:
    """The engine composes the server; nothing in the package but the entry points reaches
    back into it (a port in ``server/ports.py`` is what a part asks for instead)."""
    entry_points = {"cli", "demo"}
    back = [imp.where() for imp in imports
            if imp.target == f"{PACKAGE}.server.engine"
            and package_of(imp.importer) not in entry_points]
    assert back == []


# --- the checks themselves can fail -------------------------------------------------------------


def _fake(edges: dict[str, list[str]]) -> list[Import]:
    return [Import(f"{PACKAGE}.{a}", f"{PACKAGE}.{b}", 1)
            for a, targets in edges.items() for b in targets]


def test_the_checks_catch_what_they_are_for() -> None:
    # The knot this page replaced: engine -> connection -> engine (TYPE_CHECKING).
    knot = _fake({"server.engine": ["server.connection"],
                  "server.connection": ["server.engine"]})
    assert cycles(knot) == [["server.connection", "server.engine"]]
    layers = {"root": ("server.engine",), "fronts": ("server.connection",)}
    assert len(layer_violations(knot, [], layers)) == 1
    # A store reaching into the server, and msgpack outside its codec.
    assert package_violations(_fake({"store.sqlite": ["server.session"]}),
                              {"store": ("errors",)}) != []
    assert library_violations([Import(f"{PACKAGE}.server.session", "msgpack", 1)],
                              {"msgpack": ("protocol.codec",)}) != []
    # A dotted entry allows that module only.
    allowed = {"generate": ("server.config",)}
    assert package_violations(_fake({"generate.cli": ["server.config"]}), allowed) == []
    assert package_violations(_fake({"generate.cli": ["server.engine"]}), allowed) != []
    # A module of the server that no layer names is reported, not skipped.
    assert layer_violations([], [f"{PACKAGE}.server.brand_new"], layers) != []


def test_imports_are_found_wherever_they_stand() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import msgpack\n"
        "from pubquiz_engine.server import credentials\n"
        "from . import views\n"
        "if TYPE_CHECKING:\n"
        "    from pubquiz_engine.server.engine import Engine\n"
        "def f() -> None:\n"
        "    from pubquiz_engine.web import web_routes\n"
    )
    modules = {f"{PACKAGE}.server.{n}": None for n in ("credentials", "views", "engine")}
    modules[f"{PACKAGE}.web"] = None
    found = {(i.target, i.line) for i in
             imports_of(f"{PACKAGE}.server.session", source, modules)}
    assert found == {("typing", 1), ("msgpack", 2), (f"{PACKAGE}.server.credentials", 3),
                     (f"{PACKAGE}.server.views", 4), (f"{PACKAGE}.server.engine", 6),
                     (f"{PACKAGE}.web", 8)}


def test_the_page_tables_are_read_as_written() -> None:
    text = ("<!-- rules: demo -->\n| a | b |\n|---|---|\n| `x` | `y`, `z.w` |\n| `v` | |\n"
            "<!-- end -->\n")
    assert rule_table("demo", text) == {"x": ("y", "z.w"), "v": ()}
