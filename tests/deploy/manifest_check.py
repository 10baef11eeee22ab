"""Strict offline validation of Kubernetes and Flux manifests; runs in the tools venv (devstack/deploy_tools.py).

    .tools/venv/bin/python tests/deploy/manifest_check.py --kube-version 1.33.0 FILE|- ...

Kubernetes objects are checked by kubernetes-validate in strict mode (unknown fields fail). Flux objects
(*.toolkit.fluxcd.io) are checked against a JSON schema made from the Flux CRD models (cloudcoil-models-fluxcd),
closed with additionalProperties: false wherever the CRD lists its properties - the CRDs' structural schemas prune
unknown fields silently, so a misspelled field (e.g. `spec.intrval`) would otherwise just be dropped by the API
server. SOPS-encrypted documents (a top-level `sops` key) cannot be read and are skipped. Prints one JSON object:
{"checked": N, "skipped": [...], "errors": ["<source> <kind>/<name>: <message>", ...]}; exit 1 on any error.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import sys

import jsonschema
import kubernetes_validate
import yaml

# apiVersion -> cloudcoil module; kind -> model class of the same name.
FLUX_MODULES = {
    "helm.toolkit.fluxcd.io/v2": "cloudcoil.models.fluxcd.helm.v2",
    "source.toolkit.fluxcd.io/v1": "cloudcoil.models.fluxcd.source.v1",
    "source.toolkit.fluxcd.io/v1beta2": "cloudcoil.models.fluxcd.source.v1beta2",
    "kustomize.toolkit.fluxcd.io/v1": "cloudcoil.models.fluxcd.kustomize.v1",
    "notification.toolkit.fluxcd.io/v1": "cloudcoil.models.fluxcd.notification.v1",
    "notification.toolkit.fluxcd.io/v1beta3": "cloudcoil.models.fluxcd.notification.v1beta3",
}


def close_objects(schema):
    """Forbid unknown properties in every object schema that lists its properties (free-form maps stay open), and
    drop the models' `anyOf: [X, null]` wrappers so that errors name the offending field instead of the whole spec."""
    if isinstance(schema, dict):
        options = schema.get("anyOf")
        if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
            schema.pop("anyOf")
            schema.update(next(o for o in options if o != {"type": "null"}))
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            close_objects(value)
    elif isinstance(schema, list):
        for item in schema:
            close_objects(item)
    return schema


_flux_validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}


def flux_validator(api_version: str, kind: str):
    key = (api_version, kind)
    if key not in _flux_validators:
        module_name = FLUX_MODULES.get(api_version)
        if module_name is None:
            raise LookupError(f"unknown Flux API version {api_version}: add it to FLUX_MODULES")
        model = getattr(importlib.import_module(module_name), kind, None)
        if model is None:
            raise LookupError(f"{api_version} has no kind {kind}")
        schema = close_objects(copy.deepcopy(model.model_json_schema(by_alias=True, mode="validation")))
        # The models accept `status`; manifests in git never carry one.
        schema["properties"].pop("status", None)
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
        cls = jsonschema.validators.validator_for(schema)
        _flux_validators[key] = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return _flux_validators[key]


def check_doc(doc: dict, kube_version: str) -> list[str]:
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    if not api_version or not kind:
        return ["missing apiVersion or kind"]
    if ".toolkit.fluxcd.io/" in api_version:
        try:
            validator = flux_validator(api_version, kind)
        except LookupError as e:
            return [str(e)]
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
    try:
        kubernetes_validate.validate(doc, kube_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return [f"{path or '<root>'}: {e.message}"]
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
        return [f"no schema for {api_version} {kind} in Kubernetes {kube_version}: {e}"]
    return []


def check_stream(text: str, source: str, kube_version: str, result: dict) -> None:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        result["errors"].append(f"{source}: not valid YAML: {e}")
        return
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            result["errors"].append(f"{source}: a document is not a mapping")
            continue
        name = f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"
        if "sops" in doc:
            result["skipped"].append(f"{source} {name}: SOPS-encrypted")
            continue
        if doc.get("apiVersion") == "monitoring.coreos.com/v1":
            # No offline schema of the Prometheus Operator's CRDs here: tests/deploy/test_monitoring.py checks them.
            result["skipped"].append(f"{source} {name}: Prometheus Operator object")
            continue
        result["checked"] += 1
        for message in check_doc(doc, kube_version):
            result["errors"].append(f"{source} {name}: {message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kube-version", default="1.33.0")
    parser.add_argument("files", nargs="+", help="YAML files, or - for standard input")
    args = parser.parse_args(argv)
    result = {"checked": 0, "skipped": [], "errors": []}
    for f in args.files:
        if f == "-":
            check_stream(sys.stdin.read(), "<stdin>", args.kube_version, result)
        else:
            with open(f) as fh:
                check_stream(fh.read(), f, args.kube_version, result)
    print(json.dumps(result))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
