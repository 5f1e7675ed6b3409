#!/usr/bin/env python3
"""The resources-only stand-in for `kubectl kustomize` in tests/validate-manifests.sh.

Renders a kustomization directory to a YAML stream on stdout: its `resources` (files, and
directories rendered recursively) with the kustomization's `namespace` set on namespaced
objects. Nothing else of kustomize (components, images, patches) is applied.

    python3 tests/manifests/render_fallback.py DIR > rendered.yaml

Needs PyYAML. Used only when kubectl is missing.
"""
import os, sys, yaml
def render(d):
    k = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
    docs = []
    for r in k.get("resources", []):
        p = os.path.join(d, r)
        docs += render(p) if os.path.isdir(p) else [x for x in yaml.safe_load_all(open(p)) if x]
    ns = k.get("namespace")
    for x in docs:
        if ns and x["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"):
            x.setdefault("metadata", {})["namespace"] = ns
    return docs
print(yaml.safe_dump_all(render(sys.argv[1])))
