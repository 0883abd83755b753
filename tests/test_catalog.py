"""The catalog is the one list of model families: everything else derives from it, and no other file
keeps a copy of what it says (store names, class lists, data files)."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess

import pytest

from catalog import FAMILIES, ROUTES, ModelMetadata, family
from tools.servers import REPO


def test_every_family_is_complete_and_unique():
    from preprocessing import PREPROCESSORS
    from training.config import PRESET_NAMES, PRESETS

    assert len(set(ROUTES)) == len(FAMILIES) and len({f.store_name for f in FAMILIES}) == len(FAMILIES)
    for f in FAMILIES:
        assert f.preprocessing in PREPROCESSORS
        module, _, function = f.loader.partition(":")
        assert callable(getattr(importlib.import_module(module), function))
        assert len(set(f.class_names)) == len(f.class_names) >= 2 and f.data_files
        assert {(f.route, preset) for preset in PRESET_NAMES} <= set(PRESETS)
        assert f.train_command == f"python -m training {f.route}"
    assert {route for route, _ in PRESETS} == set(ROUTES)
    with pytest.raises(ValueError, match="known: mnist, asl"):
        family("emnist")


def test_the_service_declares_one_model_and_api_per_family_and_routes_for_each():
    from service.api import create_app
    from service.service import DigitsAndSigns
    from service.settings import Settings

    # each family's newest version (pinned to its exact version once the store has them all)
    assert sorted(m.tag.name for m in DigitsAndSigns.models) == sorted(f.store_name for f in FAMILIES)
    assert set(DigitsAndSigns.apis) == {f"{route}_probabilities" for route in ROUTES}
    paths = {route.path for route in create_app(Settings()).routes}
    for route in ROUTES:
        assert {f"/{route}/predict", f"/{route}/predict_batch"} <= paths


def test_metadata_schema_round_trips_through_the_store_format():
    meta = ModelMetadata(class_names=["a", "b"], preprocessing="mnist_digit", training={"learning_rate": None})
    stored = meta.to_store()
    assert "learning_rate" not in stored["training"]  # BentoML refuses None
    assert ModelMetadata.from_store(stored).class_names == ["a", "b"]
    with pytest.raises(ValueError):
        ModelMetadata.from_store({"class_names": ["only one"], "preprocessing": "x"})


def _literals(path) -> list[tuple[int, str]]:
    """(line, value) of every string literal in a Python file that is not a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_no_other_file_keeps_a_list_of_families():
    """Store names, class lists and data file names are written in the catalog only: no code,
    configuration or page outside it (tests and docs aside) spells them out."""
    files = subprocess.run(["git", "ls-files", "*.py", "*.yaml", "*.yml", "Makefile", "*.js", "*.html", "*.sh"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    needles = {f.store_name for f in FAMILIES} | {name for f in FAMILIES for name in f.data_files}
    # a class list spelt out as one string ("ABCDEFGHIKLMNOPQRSTUVWXY"), not inside another alphabet
    needles |= {rf"(?<![0-9A-Za-z]){re.escape(''.join(f.class_names))}(?![0-9A-Za-z])" for f in FAMILIES}
    pattern = re.compile("|".join(n if n.startswith("(?") else re.escape(n)
                                  for n in sorted(needles, key=len, reverse=True)))
    offenders = []
    for name in files:
        if name.startswith(("catalog/", "tests/", "docs/")):
            continue
        path = REPO / name
        if name.endswith(".py"):
            found = [(line, value) for line, value in _literals(path) if pattern.search(value)]
        else:
            found = [(line, text) for line, text in enumerate(path.read_text().splitlines(), start=1)
                     if pattern.search(text) and not text.lstrip().startswith(("#", "//"))]
        offenders += [f"{name}:{line}: {text.strip()[:100]}" for line, text in found]
    assert not offenders, "family facts outside the catalog:\n" + "\n".join(offenders)
