"""Every dead-letter reason the code emits has a row in the README, and every row a reason.

The reasons are found in the code, not listed here: every call of a
function or class that takes a `reason` (`make_dead_letter`,
`rejected_record`, the writers' `_dead_letter`, `ClassifyError`,
`DecodeError`, `Unsettled`, ...) is read, as is every value assigned to a
variable `reason`, and resolved when it is a string or a module constant (a
name passed through, such as `reason=reason`, is resolved at the call that
gave it). The README's rows
are the reason column of the dead-letter runbook and of the archive-limits
table.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PACKAGES = ("transforms", "pipelines")
#: Classes that take a `reason` which is not a dead letter's: a skipped event's reason
#: (counted, never a letter) and the words a Stripe retrieval's failure puts in a letter's
#: `error` (its reason stays `charge_missing`).
NOT_LETTER_REASONS = {"Skip", "CompletionError", "RetrievalError"}


def _modules() -> list[tuple[str, ast.Module]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found.append((name, ast.parse(path.read_text(), filename=str(path))))
    return found


Carriers = dict[str, int]


def _carriers(tree: ast.Module) -> Carriers:
    """{callable name: position of its `reason` argument} for every function or class of
    `tree` that takes one (methods without `self`; classes by `__init__` or their fields)."""
    carriers: Carriers = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            fields = [
                item.target.id
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            ]
            init = next(
                (i for i in node.body if isinstance(i, ast.FunctionDef) and i.name == "__init__"),
                None,
            )
            names = [a.arg for a in init.args.args[1:]] if init else fields
            if "reason" in names and node.name not in NOT_LETTER_REASONS:
                carriers[node.name] = names.index("reason")
        elif isinstance(node, ast.FunctionDef) and node.name != "__init__":
            names = [a.arg for a in node.args.args]
            names = names[1:] if names[:1] == ["self"] else names
            if "reason" in names:
                carriers[node.name] = names.index("reason")
            elif "reason" in [a.arg for a in node.args.kwonlyargs]:
                carriers[node.name] = -1
    return carriers


def _values(node: ast.expr, module: object) -> set[str]:
    """The strings `node` can be: a literal, a module constant, either side of an `if`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Name) and isinstance(getattr(module, node.id, None), str):
        return {getattr(module, node.id)}
    if isinstance(node, ast.IfExp):
        return _values(node.body, module) | _values(node.orelse, module)
    return set()


def _reason_expressions(tree: ast.Module, local: Carriers, shared: Carriers) -> list[ast.expr]:
    """What `tree` gives as a reason: carriers' reason arguments (a method named like
    another module's is this module's), and values assigned to a variable `reason`."""
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "reason" for target in node.targets
        ):
            found.append(node.value)
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        callee = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        position = local.get(callee or "", shared.get(callee or ""))
        if position is None:
            continue
        given = [k.value for k in node.keywords if k.arg == "reason"]
        if not given and 0 <= position < len(node.args):
            given = [node.args[position]]
        found += given
    return found


def emitted_reasons() -> dict[str, set[str]]:
    """{reason: the modules that give it} for every reason the code passes to a carrier."""
    modules = _modules()
    local = {name: _carriers(tree) for name, tree in modules}
    shared = {
        callee: position for carriers in local.values() for callee, position in carriers.items()
    }
    reasons: dict[str, set[str]] = {}
    for name, tree in modules:
        module = importlib.import_module(name)
        for expression in _reason_expressions(tree, local[name], shared):
            for reason in _values(expression, module):
                reasons.setdefault(reason, set()).add(name)
    return reasons


def _table_reasons(heading: str, column: int) -> set[str]:
    """The backticked words of `column` in the first table under `heading`."""
    text = README.read_text()
    section = text[text.index(f"\n{heading}\n") + len(heading) + 2 :].split("\n### ", 1)[0]
    rows = re.findall(r"^\|(.*)\|$", section, re.MULTILINE)[2:]
    cells = [re.sub(r"\(step `\w+`\)", "", row.split("|")[column]) for row in rows]
    return {word for cell in cells for word in re.findall(r"`([a-z_]+)`", cell)}


def documented_reasons() -> set[str]:
    return _table_reasons("### Dead letters: runbook", 1) | _table_reasons(
        "### Archive limits and refused files", 0
    )


def test_the_scan_finds_the_reasons_of_each_kind_of_producer() -> None:
    reasons = emitted_reasons()
    # One of each: a source's constant, a classify error's, a fold's, a writer's, the
    # ledger's, a literal-free `if`, the generic one.
    for reason, module in [
        ("invalid_json", "transforms.sources.decode"),
        ("invalid_charge", "transforms.domain.facts"),
        ("payment_not_settled", "transforms.domain.fold"),
        ("rejected_by_postgres", "transforms.sinks.postgres"),
        ("outcome_unknown", "transforms.sinks.ledger"),
        ("object_too_large", "transforms.sources.archive"),
        ("unexpected_error", "transforms.domain.events"),
    ]:
        assert module in reasons.get(reason, set()), reason


def test_every_reason_the_code_emits_is_in_the_readme() -> None:
    assert sorted(set(emitted_reasons()) - documented_reasons()) == []


def test_every_reason_the_readme_lists_is_emitted() -> None:
    assert sorted(documented_reasons() - set(emitted_reasons())) == []
