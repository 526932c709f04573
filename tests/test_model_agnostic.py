"""Outside ``recflow/models/``, code reaches a model only through what ``Recommender`` declares.

Indexing, retrieval, serving, tracking, the tasks and the flows must work for a model they have
never heard of: a model registered in ``recflow.models.MODELS`` gets everything by declaring its
capabilities (``tests/models/test_contract.py`` holds it to them). So, read from the source with
``ast`` (imports and strings in docstrings do not count), nowhere in ``recflow/`` (but
``recflow/models/``), ``tasks/`` or ``flows/``:

* ``hasattr`` / ``getattr`` probes an object whose expression mentions a model (``model``,
  ``type(model)``, ``result.model`` ...): a capability guessed is one the contract does not state;
* ``isinstance`` / ``issubclass`` names a registered model's class;
* a comparison (``==``, ``!=``, ``in``, ``not in``), a ``match`` case or a dict literal's key
  branches on a registered model's name. A name that is also a word of another vocabulary
  (``"popular"``: the recommend fallback, a negative kind, a popularity label) counts only where
  it is compared with something that mentions a model or a name.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from recflow.models import MODELS

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("recflow", "tasks", "flows")
EXEMPT = ("recflow/models/", "recflow/data/bundled/")
#: model names that are also ordinary words elsewhere in the project, with where
AMBIGUOUS = {"popular": "recommend's fallback, a negative kind, a popularity bin label"}
_MODEL_LIKE = re.compile(r"model|name", re.I)


def model_leaks(source: str, where: str, names: set[str], classes: set[str]) -> list[str]:
    """Every place in ``source`` that probes a model's attributes or branches on a model's name or class."""
    tree = ast.parse(source)
    found: list[str] = []

    def text(node: ast.AST) -> str:
        return ast.get_source_segment(source, node) or ""

    def named(node: ast.AST) -> list[str]:
        """The model names a constant (or a literal tuple / list / set of them) holds."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [n for elt in node.elts for n in named(elt)]
        return []

    def branches(constants: list[str], against: list[ast.AST]) -> bool:
        return any(n not in AMBIGUOUS for n in constants) or (bool(constants) and any(_MODEL_LIKE.search(text(a)) for a in against))

    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
            if node.func.id in ("hasattr", "getattr") and re.search("model", text(node.args[0]), re.I):
                found.append(f"{line}: {text(node)} probes a model (declare the capability on Recommender)")
            if node.func.id in ("isinstance", "issubclass") and len(node.args) == 2:
                kinds = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
                if any(isinstance(k, (ast.Name, ast.Attribute)) and text(k).rpartition(".")[2] in classes for k in kinds):
                    found.append(f"{line}: {text(node)} branches on a model's class")
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for i, operand in enumerate(operands):
                if branches(named(operand), operands[:i] + operands[i + 1 :]):
                    found.append(f"{line}: {text(node)} branches on a model's name")
                    break
        elif isinstance(node, ast.Match):
            for case in node.cases:
                values = [p.value for p in ast.walk(case.pattern) if isinstance(p, ast.MatchValue)]
                if branches([n for v in values for n in named(v)], [node.subject]):
                    found.append(f"{where}:{case.pattern.lineno}: case {text(case.pattern)} branches on a model's name")
        elif isinstance(node, ast.Dict):
            keys = [n for k in node.keys if k is not None for n in named(k) if n not in AMBIGUOUS]
            if keys:
                found.append(f"{line}: a dict keyed by model names ({', '.join(keys)}) dispatches on a model's name")
    return sorted(found, key=lambda leak: int(leak.split(":")[1]))


NAMES = {"ease", "mf", "popular"}
CLASSES = {"EASERecommender"}


def leaks(source: str) -> list[str]:
    return model_leaks(source, "x.py", NAMES, CLASSES)


def test_a_probed_attribute_on_a_model_is_found():
    expected = "x.py:1: hasattr(model, 'item_embeddings') probes a model (declare the capability on Recommender)"
    assert leaks("if hasattr(model, 'item_embeddings'):\n    pass\n") == [expected]
    assert len(leaks("h = getattr(model, 'history_', [])\nk = hasattr(type(self.model), 'keras_model')\n")) == 2
    assert leaks("n = getattr(params, 'epochs', None)\nok = hasattr(libc, 'prctl')\n") == []


def test_a_branch_on_a_model_name_or_class_is_found():
    source = "\n".join(
        [
            "if params.name == 'ease': pass",
            "if name in ('mf', 'bias'): pass",
            "if isinstance(model, EASERecommender): pass",
            "match params.name:",
            "    case 'mf': pass",
            "extra = {'ease': 1}[name]",
            "if kind == 'mf': pass",
        ]
    )
    assert [leak.split(":")[1] for leak in leaks(source)] == ["1", "2", "3", "5", "6", "7"]


def test_a_word_shared_with_a_model_name_counts_only_against_a_model_or_a_name():
    assert leaks("if fallback == 'popular': pass\nif kind not in (None, 'popular'): pass\nlabels = {'popular': 2}\n") == []
    assert len(leaks("if model_name == 'popular': pass\n")) == 1


def test_outside_recflow_models_no_code_probes_a_model_or_branches_on_its_name():
    names = set(MODELS)
    classes = {cls.__name__ for cls in MODELS.values()}
    found = []
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if not rel.startswith(EXEMPT):
                found += model_leaks(path.read_text(), rel, names, classes)
    assert not found, "model-specific code outside recflow/models/:\n" + "\n".join(found)
