"""Each file in its room and one name per concept: rules of the house a reader relies on."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "service", "infra", "smoke", "bench", "scripts", "testkit")


def modules(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return names


def test_no_two_public_classes_share_a_name_across_the_packages() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in [*modules(*PACKAGES), ROOT / "__main__.py"]:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where[node.name].append(path.relative_to(ROOT).as_posix())
    assert {name: places for name, places in where.items() if len(places) > 1} == {}


def test_the_server_package_holds_no_client_of_itself() -> None:
    # the smoke client checks a deployed service from outside; it lives in smoke/, not in the image's service/
    assert not (ROOT / "service" / "smoke.py").exists()
    assert [p.name for p in modules("service") if "smoke" in imported_modules(p)] == []


def test_nothing_under_bench_imports_the_tests() -> None:
    # benchmarks and tests share helpers through testkit/, never one through the other
    importers = [
        p.relative_to(ROOT).as_posix()
        for p in modules("bench")
        if any(m == "tests" or m.startswith("tests.") for m in imported_modules(p))
    ]
    assert importers == []
