"""JSON schemas for kubeconform, made offline from the pinned Kubernetes module and our own CRDs.

kubeconform downloads its schemas by default; this machine (and CI) may be offline. The pinned
k8s.io/kubernetes module (the test bed's K8S_VERSION, from the Go module proxy) ships the API's
OpenAPI v2 document, api/openapi-spec/swagger.json: every kind with x-kubernetes-group-version-kind
gets a file `<kind>-<group>-<version>.json` that refers into one `_definitions.json`. Strict, like
kubeconform's `-strict` schema sets: an object with listed properties allows no others. CRDs
(crds/*.yaml in the chart) become schemas from their openAPIV3Schema.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

# Types the OpenAPI document writes as strings that also take integers.
INT_OR_STRING = ("io.k8s.apimachinery.pkg.util.intstr.IntOrString", "io.k8s.apimachinery.pkg.api.resource.Quantity")
TEMPLATE = "{{ .ResourceKind }}-{{ .Group }}-{{ .ResourceAPIVersion }}.json"


def swagger_path(k8s_version: str) -> Path:
    """api/openapi-spec/swagger.json of k8s.io/kubernetes@version (module cache, or the Go module proxy)."""
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    proc = subprocess.run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{k8s_version}"],
                          capture_output=True, text=True, env=env, cwd="/")
    if proc.returncode != 0:
        raise RuntimeError(f"go mod download k8s.io/kubernetes@{k8s_version} failed: {proc.stderr or proc.stdout}")
    return Path(json.loads(proc.stdout)["Dir"]) / "api/openapi-spec/swagger.json"


def _strict(node: Any, names: bool = False) -> Any:
    """Strict copy of a schema node; ``names``: node maps property names (kept even if x-kubernetes-*)."""
    if isinstance(node, dict) and names:
        return {k: _strict(v) for k, v in node.items()}
    if isinstance(node, dict):
        out = {k: _strict(v, k == "properties") for k, v in node.items() if not k.startswith("x-kubernetes-")}
        if isinstance(out.get("$ref"), str):
            out["$ref"] = "_definitions.json#/definitions/" + out["$ref"].rsplit("/", 1)[-1]
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def _file_name(kind: str, group: str, version: str) -> str:
    # kubeconform's template: Group is the apiVersion's part before "/" (the version itself for core).
    return f"{kind.lower()}-{group or version}-{version}.json"


def write_kubernetes(swagger: Path, dest: Path) -> int:
    """Write the schema files for every built-in kind; returns how many kinds."""
    definitions = json.loads(swagger.read_text())["definitions"]
    out = {}
    for name, schema in definitions.items():
        if name in INT_OR_STRING:
            out[name] = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
        else:
            out[name] = _strict(schema)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "_definitions.json").write_text(json.dumps({"definitions": out}))
    count = 0
    for name, schema in definitions.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            ref = {"$ref": f"_definitions.json#/definitions/{name}"}
            (dest / _file_name(gvk["kind"], gvk["group"], gvk["version"])).write_text(json.dumps(ref))
            count += 1
    return count


def write_crds(crd_files: list[Path], dest: Path) -> list[str]:
    """Schemas for the CRDs in these files (served versions); returns the file names written."""
    written = []
    for path in crd_files:
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                props = schema.setdefault("properties", {})
                props.setdefault("apiVersion", {"type": "string"})
                props.setdefault("kind", {"type": "string"})
                props["metadata"] = {"$ref": "_definitions.json#/definitions/"
                                     "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
                name = _file_name(kind, group, version["name"])
                (dest / name).write_text(json.dumps(_strict(schema)))
                written.append(name)
    return written
