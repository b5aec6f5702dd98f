"""The floors of docs/architecture.md, enforced: every import, function-local ones included, goes to the same floor
or a lower one. No exceptions list: a new module gets its floor here, or the test says which one it lacks."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "methods", "noise", "reports", "leaderboard")

# (module prefix, floor); the longest matching prefix wins. 0 ground, 1 noise, 2 training core and store layout,
# 3 method adapters, 4 readers of the results store, 5 the harness (runner), 6 command lines and orchestration
FLOORS = {
    "benchmark": 0, "benchmark.errors": 0, "benchmark.io": 0, "benchmark.registry": 0, "benchmark.owned": 0,
    "benchmark.boxes": 0, "benchmark.settings_check": 0,
    "benchmark.datasets": 0, "benchmark.datasets.formats": 0, "benchmark.evaluation": 0,
    "benchmark.evaluation.metrics": 0, "benchmark.evaluation.tide": 0, "benchmark.evaluation.failure_modes": 0,
    "noise": 1,
    "benchmark.config": 2, "benchmark.config_docs": 2, "benchmark.scalars": 2, "benchmark.train_result": 2,
    "benchmark.engine": 2, "benchmark.recipes": 2, "benchmark.weights": 2, "benchmark.store_layout": 2,
    "methods._core": 2, "methods.core": 2, "methods.base": 2,
    "methods": 3,
    "benchmark.results": 4, "reports": 4, "leaderboard": 4,
    "benchmark.runner": 5,
    "benchmark.cli": 6, "benchmark.train_cli": 6, "benchmark.reproduce": 6, "benchmark.config_cli": 6,
    "benchmark.testing": 6, "benchmark.recipes.cli": 6, "benchmark.datasets.cli": 6, "benchmark.evaluation.cli": 6,
    "benchmark.runner.cli": 6, "noise.cli": 6, "methods.cli": 6, "methods.scaffold": 6, "reports.cli": 6,
    "reports.inspect_cli": 6, "leaderboard.cli": 6,
}


def floor(module: str) -> int:
    best = max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)
    return FLOORS[best]


def imports(path: Path, module: str):
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield node.lineno, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            yield node.lineno, [f"{base}.{a.name}" for a in node.names]


def test_no_import_goes_up_a_floor():
    wrong = []
    for root in PACKAGES:
        for path in sorted((REPO / root).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            for line, names in imports(path, module):
                for name in names:
                    if name.split(".")[0] in PACKAGES and floor(name) > floor(module):
                        wrong.append(f"{path.relative_to(REPO)}:{line} {module} (floor {floor(module)}) imports "
                                     f"{name} (floor {floor(name)})")
    assert not wrong, "\n".join(wrong)


def test_the_floor_table_is_the_documented_one():
    text = (REPO / "docs" / "architecture.md").read_text()
    for floor_no in range(7):
        assert f"| {floor_no} |" in text, f"docs/architecture.md does not describe floor {floor_no}"
