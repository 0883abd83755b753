"""Render deploy/kubernetes/<overlay> as `kubectl kustomize` would, for the features these
kustomizations use (resources, labels, images, JSON 6902 patches), so that the tests check the
objects a cluster would get, offline, without a kustomize binary."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "labels", "images", "patches"}


def render(directory: Path) -> list[dict]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    assert not unsupported, f"{directory}: kustomization fields this renderer does not know: {unsupported}"
    objects: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            objects.extend(render(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    for entry in kustomization.get("labels", []):
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    for image in kustomization.get("images", []):
        for obj in objects:
            for container in _containers(obj):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        matched = [o for o in objects if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]]
        assert matched, f"{directory}: patch target {target} matches nothing"
        for obj in matched:
            for op in yaml.safe_load(patch["patch"]):
                apply_json_patch(obj, op)
    return objects


def _containers(obj: dict) -> list[dict]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def apply_json_patch(obj: dict, op: dict) -> None:
    """One RFC 6902 add/replace/remove operation; the path must exist (but for its last step on add)."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
    parent = obj
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    kind = op["op"]
    if isinstance(parent, list):
        if kind == "add":
            parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(op["value"]))
        elif kind == "replace":
            parent[int(last)] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del parent[int(last)]
        else:
            raise AssertionError(f"unsupported op {kind}")
        return
    if kind in ("replace", "remove"):
        assert last in parent, f"{op['path']}: nothing to {kind}"
    if kind == "remove":
        del parent[last]
    elif kind in ("add", "replace"):
        parent[last] = copy.deepcopy(op["value"])
    else:
        raise AssertionError(f"unsupported op {kind}")
