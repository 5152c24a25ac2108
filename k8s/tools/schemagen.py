#!/usr/bin/env python3
"""Turn published Kubernetes API descriptions into the JSON-schema files kubeconform reads offline.

kubeconform normally downloads its schemas from the internet; here nothing may be fetched at run
time except from package registries, so validate.sh gathers the *published* API descriptions from
registries (Kubernetes' own OpenAPI spec from the k8s.io/kubernetes Go module, CRDs from Maven and
Go module artifacts) and this script rewrites them into the layout that

    kubeconform -schema-location '<out>/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'

expects (for the core group kubeconform's {{.Group}} is the version, e.g. ``v1/configmap_v1.json``).

Two inputs, both JSON (YAML is turned into JSON first by the yaml2json helper, since the stdlib has
no YAML parser):

* ``openapi``: a Kubernetes swagger 2.0 document (``api/openapi-spec/swagger.json``). Every
  definition carrying ``x-kubernetes-group-version-kind`` becomes one self-contained file that holds
  the definitions it references (not the whole 3 MB spec, which would make each file huge).
* ``crd``: a JSON array of CustomResourceDefinition documents; each served version's
  ``openAPIV3Schema`` becomes one file.

Both are made *strict* the way the well-known "-strict" schema sets are: an object schema that lists
``properties`` and says nothing about extra keys gets ``additionalProperties: false`` (unless it is
``x-kubernetes-preserve-unknown-fields``), so a misspelt or misplaced field is an error instead of
being silently pruned by the API server. Kubernetes-only keywords are lowered to draft-4 JSON schema,
the dialect kubeconform compiles with: int-or-string, Quantity, ``nullable``.

Stdlib only on purpose: it runs before any project venv exists (CI, a fresh clone).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

# Kubernetes types whose JSON form is looser than their swagger declaration says.
INT_OR_STRING = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
QUANTITY_DEF = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING_DEF = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"


def strictify(node: Any) -> Any:
    """Return a copy of a schema node lowered to strict draft-4 JSON schema (see module doc)."""
    if isinstance(node, list):
        return [strictify(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strictify(v) for k, v in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        # CRDs usually already carry anyOf [integer, string]; the bare type, if any, must go.
        out.pop("type", None)
        out.setdefault("anyOf", copy.deepcopy(INT_OR_STRING["anyOf"]))
    if out.get("format") == "int-or-string":
        out.pop("type", None)
        out.pop("format", None)
        out.setdefault("anyOf", copy.deepcopy(INT_OR_STRING["anyOf"]))
    if out.pop("nullable", False):
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    preserve = out.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def _refs(node: Any, found: set[str]) -> None:
    """Collect the definition names a schema node refers to (``#/definitions/NAME``)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            found.add(ref[len("#/definitions/") :])
        for v in node.values():
            _refs(v, found)
    elif isinstance(node, list):
        for v in node:
            _refs(v, found)


def _closure(defs: dict[str, Any], root: str) -> dict[str, Any]:
    """The definitions reachable from ``root`` (itself included)."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        found: set[str] = set()
        _refs(defs[name], found)
        todo.extend(found - seen)
    return {n: defs[n] for n in sorted(seen)}


def _special_defs(defs: dict[str, Any]) -> dict[str, Any]:
    """Swagger declares Quantity and IntOrString as plain strings; YAML users write numbers too."""
    out = dict(defs)
    if QUANTITY_DEF in out:
        out[QUANTITY_DEF] = {"anyOf": [{"type": "string"}, {"type": "number"}]}
    if INT_OR_STRING_DEF in out:
        out[INT_OR_STRING_DEF] = copy.deepcopy(INT_OR_STRING)
    return out


def _target(out_dir: Path, group: str, version: str, kind: str) -> Path:
    # kubeconform's {{.Group}} is the part of apiVersion before '/', i.e. the version for core.
    return out_dir / (group or version) / f"{kind.lower()}_{version}.json"


def _write(path: Path, schema: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True))


def from_openapi(spec: dict[str, Any], out_dir: Path) -> int:
    """Write one standalone strict schema per group/version/kind of a swagger 2.0 document."""
    defs = _special_defs(spec["definitions"])
    written: set[tuple[str, str, str]] = set()
    # meta/v1 types (DeleteOptions, WatchEvent, ...) claim a GVK in every group but are not
    # resources anyone writes in a manifest: skip them so a real kind always wins its file name.
    for name in sorted(defs):
        if name.startswith("io.k8s.apimachinery."):
            continue
        for gvk in defs[name].get("x-kubernetes-group-version-kind", []):
            key = (gvk.get("group", ""), gvk["version"], gvk["kind"])
            if key in written:
                continue
            written.add(key)
            schema = {
                "$ref": f"#/definitions/{name}",
                "definitions": {n: strictify(d) for n, d in _closure(defs, name).items()},
            }
            _write(_target(out_dir, *key), schema)
    return len(written)


def _extend_enum(schema: dict[str, Any], dotted: str, values: list[str]) -> None:
    node = schema
    for part in dotted.split("."):
        node = node["properties"][part]
    if "enum" not in node:
        raise SystemExit(f"schemagen: {dotted} has no enum to extend")
    node["enum"] = node["enum"] + [v for v in values if v not in node["enum"]]


def from_crds(docs: list[dict[str, Any]], out_dir: Path, extend: dict[str, dict[str, list[str]]]) -> int:
    """Write one strict schema per served version of each CustomResourceDefinition in ``docs``."""
    count = 0
    for crd in docs:
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        for ver in spec["versions"]:
            if not ver.get("served", True):
                continue
            schema = copy.deepcopy(ver["schema"]["openAPIV3Schema"])
            # The API server always accepts these on a custom resource, whether or not the CRD's
            # schema lists them (fabric8-generated ones, like the Flink operator's, do not).
            props = schema.setdefault("properties", {})
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            props.setdefault("metadata", {"type": "object"})
            for dotted, values in extend.get(f"{kind}/{ver['name']}", {}).items():
                _extend_enum(schema, dotted, values)
                print(
                    f"schemagen: NOTE {group}/{ver['name']} {kind}: enum {dotted} extended with {values}",
                    file=sys.stderr,
                )
            _write(_target(out_dir, group, ver["name"], kind), strictify(schema))
            count += 1
    return count


def _parse_extend(items: list[str]) -> dict[str, dict[str, list[str]]]:
    """``Kind/version:dotted.path=a,b`` -> {"Kind/version": {"dotted.path": ["a", "b"]}}."""
    out: dict[str, dict[str, list[str]]] = {}
    for item in items:
        target, _, values = item.partition("=")
        kv, _, dotted = target.partition(":")
        if not (kv and dotted and values):
            raise SystemExit(f"schemagen: bad --extend-enum {item!r}")
        out.setdefault(kv, {})[dotted] = values.split(",")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("openapi", help="Kubernetes swagger.json -> per-kind schemas")
    o.add_argument("--in", dest="src", required=True, type=Path)
    o.add_argument("--out", required=True, type=Path)
    c = sub.add_parser("crd", help="CRD documents (JSON array) -> per-version schemas")
    c.add_argument("--in", dest="src", required=True, type=Path)
    c.add_argument("--out", required=True, type=Path)
    c.add_argument(
        "--extend-enum",
        action="append",
        default=[],
        metavar="KIND/VERSION:PATH=V1,V2",
        help="add values to an enum under spec (used, and reported, for a CRD older than the cluster's)",
    )
    args = ap.parse_args(argv)
    data = json.loads(args.src.read_text())
    if args.cmd == "openapi":
        n = from_openapi(data, args.out)
    else:
        docs = data if isinstance(data, list) else [data]
        n = from_crds(docs, args.out, _parse_extend(args.extend_enum))
    if n == 0:
        raise SystemExit(f"schemagen: no schema found in {args.src}")
    print(f"schemagen: {n} schemas from {args.src.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
