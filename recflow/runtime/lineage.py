"""Code lineage: which project modules a piece of code can run, computed from imports, never listed by hand.

A cached task must rerun when any code it can execute changes, not only the modules someone
remembered to list. The lineage of a module is the closure of the project modules it imports
(``import a.b``, ``from a.b import c`` where ``a.b.c`` may itself be a module, relative imports),
read from the source with ``ast`` so imports inside functions count too: the project imports
heavy or cyclic modules lazily (``recflow.prep.genres`` -> ``recflow.prep.features``, ``embeddings`` ->
``recflow.prep.sampling``) and those calls are as much the task's code as top-level ones.

What is deliberately not followed:
  * modules outside the project packages (numpy, gensim ...): their versions are the
    environment's business, not the cache key's;
  * imports under ``if TYPE_CHECKING:``: they never run;
  * a package's ``__init__`` that is only traversed (``import recflow.prep.split`` runs
    ``recflow/__init__.py`` too) unless it is imported by name (``from recflow.data import ...``);
  * a *registry*'s imports of its own package's submodules. ``recflow.models`` imports every
    model to fill ``MODELS``; following that would make every model depend on every other one.
    Code that looks a model up through the registry adds the chosen model's lineage itself
    (``tasks/train.py``), so editing one model's file reruns only that model and editing a shared
    module (``embeddings``, ``keras_training``) reruns exactly the models whose lineage holds it.

A module's lineage digest hashes the names and source text of its closure. Parsing and closures
are cached per source snapshot (file sizes and mtimes), so the thousands of key computations of a
run cost a ``stat`` per file.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_PACKAGES = ("recflow", "tasks", "flows")
INPUTS_FILE = "inputs.json"  # in a stage folder: the stage folders its task read (data lineage, for ``recflow gc``)
REGISTRIES = frozenset({"recflow.models"})


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


_PARSE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2048)
def imported_names(module: str, source: str, is_package: bool = False) -> frozenset[str]:
    """Absolute dotted names a module's source may import, wherever the import statement sits.

    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a submodule); callers keep the
    names that are modules. Imports under ``if TYPE_CHECKING:`` are skipped. Cached by source text.
    """
    with _PARSE_LOCK:  # CPython 3.11's parser is not thread-safe: concurrent cache keys raised "AST constructor recursion depth mismatch"
        tree = ast.parse(source, filename=module)
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(p for p in [*base_parts, node.module or ""] if p)
            else:
                base = node.module or ""
            if base and node.module:  # ``from . import x`` only traverses the package
                names.add(base)
            names.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names if alias.name != "*")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return frozenset(names)


@dataclass(frozen=True)
class ModuleSource:
    name: str
    source: str
    is_package: bool = False


def closure(roots: Iterable[str], sources: Mapping[str, ModuleSource], registries: Iterable[str] = REGISTRIES) -> list[str]:
    """Sorted names of the project modules reachable from ``roots`` (roots included, if they are project modules)."""
    registries = frozenset(registries)
    seen: set[str] = set()
    stack = [r for r in roots if r in sources]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        mod = sources[name]
        for dep in imported_names(name, mod.source, mod.is_package):
            if dep not in sources or dep in seen:
                continue
            if name in registries and dep.startswith(name + "."):
                continue  # the registry's models: each user adds the one it runs
            stack.append(dep)
    return sorted(seen)


def digest(names: Iterable[str], sources: Mapping[str, ModuleSource]) -> str:
    h = hashlib.sha256()
    for name in sorted(names):
        h.update(name.encode() + b"\x00" + sources[name].source.encode() + b"\x00")
    return h.hexdigest()


def package_dirs(packages: Iterable[str] = PROJECT_PACKAGES) -> dict[str, Path]:
    """Where each project package's files are, found without importing them.

    ``flows`` is a namespace package, and so is any folder of that name elsewhere on ``sys.path``
    (pytest puts ``tests/`` there, whose ``tests/flows`` then joins it): of several locations, the
    one beside the first regular project package (``recflow/``'s folder: a checkout or a
    ``site-packages``) is the project's.
    """
    found: dict[str, list[Path]] = {}
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            found[name] = [Path(p) for p in spec.submodule_search_locations]
    anchor = next((locations[0].parent for locations in found.values() if len(locations) == 1), None)
    return {name: next((p for p in locations if p.parent == anchor), locations[0]) for name, locations in found.items()}


@dataclass
class Lineage:
    """The project's module sources, read from ``packages`` (name -> folder) and re-read when a file changes."""

    packages: dict[str, Path]
    registries: frozenset[str] = REGISTRIES
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _snapshot: tuple = field(default=(), repr=False)
    _known: list = field(default_factory=list, repr=False)
    _sources: dict[str, ModuleSource] = field(default_factory=dict, repr=False)
    _digests: dict[tuple[str, ...], str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_root(cls, root: Path, packages: Iterable[str] = PROJECT_PACKAGES) -> Lineage:
        """A project checkout at ``root`` (its ``recflow/``, ``tasks/``, ``flows/`` folders)."""
        return cls({p: Path(root) / p for p in packages if (Path(root) / p).is_dir()})

    @classmethod
    def installed(cls) -> Lineage:
        return cls(package_dirs())

    def _files(self) -> list[tuple[str, Path, bool]]:
        out = []
        for package, folder in sorted(self.packages.items()):
            for path in sorted(folder.rglob("*.py")):
                rel = path.relative_to(folder).with_suffix("")
                parts = [package, *rel.parts]
                is_package = parts[-1] == "__init__"
                if is_package:
                    parts = parts[:-1]
                if all(p.isidentifier() for p in parts):
                    out.append((".".join(parts), path, is_package))
        return out

    def sources(self) -> dict[str, ModuleSource]:
        """Name -> source of every project module, re-read only when some file's size or mtime changed.

        Only the known files are stat'ed; a new module matters only once some existing file is
        edited to import it, and that edit triggers a full rescan.
        """
        with self._lock:
            if self._snapshot and self._snapshot == self._stat(self._known):
                return self._sources
            files = self._files()
            self._known = [(name, path) for name, path, _ in files]
            self._snapshot = self._stat(self._known)
            self._sources = {name: ModuleSource(name, path.read_text(encoding="utf-8"), pkg) for name, path, pkg in files}
            self._digests = {}
            return self._sources

    @staticmethod
    def _stat(files: list[tuple[str, Path]]) -> tuple:
        out = []
        for name, path in files:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return ()
            out.append((name, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def modules(self, roots: Iterable[str]) -> list[str]:
        return closure(roots, self.sources(), self.registries)

    def digest(self, roots: Iterable[str]) -> str:
        """sha256 of the names and sources of ``roots``' closure; cached until a project file changes."""
        key = tuple(sorted(set(roots)))
        sources = self.sources()
        with self._lock:
            cached = self._digests.get(key)
        if cached is None:
            cached = digest(closure(key, sources, self.registries), sources)
            with self._lock:
                self._digests[key] = cached
        return cached


@functools.cache
def installed() -> Lineage:
    """The process's one ``Lineage`` of the installed project packages (a checkout, or a wheel's copy in site-packages)."""
    return Lineage.installed()
