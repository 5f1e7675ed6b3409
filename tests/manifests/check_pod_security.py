#!/usr/bin/env python3
"""Pod Security admission, offline: checks every pod template of a rendered manifest against the
Pod Security level its namespace enforces, rule by rule from the Kubernetes "Pod Security
Standards" page (policy version "latest" as of 1.33; pod-security-admission's check_*.go).

    python3 tests/manifests/check_pod_security.py RENDERED_YAML
    python3 tests/manifests/check_pod_security.py --self-test CASES_YAML

A rendering must create the namespace of every pod template it holds, and label it
`pod-security.kubernetes.io/enforce` with the strictest level its own pods meet (least
privilege: a namespace enforcing less than its pods need admits more than we ship). `warn` and
`audit` labels, when set, must be met too (our own pods must not raise warnings).

The API server is the real judge; this mirrors its rules so a rendering the server would refuse
fails here first. Windows-only fields other than hostProcess are not checked (Linux pods only).

Prints one `error: FILE: Kind/name (namespace NS enforces LEVEL): FIELD: what` line per
problem; exits 1 if there is any. --self-test runs the cases file (each case: a pod spec, a
level and the exact rule ids expected) to show that every rule can fail.

Needs PyYAML.
"""
import sys

import yaml

LEVELS = ["restricted", "baseline", "privileged"]  # strictest first

# Baseline "Capabilities": adding anything beyond this list is refused (NET_RAW is not on it,
# although container runtimes grant it by default).
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                 "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
# Baseline "Sysctls": the safe, namespaced set (net.ipv4.ping_group_range is one).
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
# Baseline "SELinux": only these types, and no user or role.
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
# Restricted "Volume Types".
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}

# Where each kind keeps its pod template (metadata + spec).
TEMPLATE_PATHS = {
    "Pod": [],
    "DaemonSet": ["spec", "template"], "Deployment": ["spec", "template"],
    "StatefulSet": ["spec", "template"], "ReplicaSet": ["spec", "template"],
    "ReplicationController": ["spec", "template"], "Job": ["spec", "template"],
    "CronJob": ["spec", "jobTemplate", "spec", "template"],
}


def containers(spec):
    """(field path, container) for every container, init container and ephemeral container."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            yield f"spec.{key}[{c.get('name')}]", c


def check(meta, spec):
    """Every violation of a pod template: [(level it breaks, rule id, field, what)]. A
    violation of "baseline" also breaks "restricted" (restricted includes baseline)."""
    out = []
    v = lambda level, rule, field, what: out.append((level, rule, field, what))
    psc = spec.get("securityContext") or {}
    cs = list(containers(spec))

    # ---- baseline --------------------------------------------------------------------------
    # HostProcess: Windows host containers have full host access.
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        v("baseline", "hostProcess", "spec.securityContext.windowsOptions.hostProcess", "must be unset or false")
    for p, c in cs:
        if ((c.get("securityContext") or {}).get("windowsOptions") or {}).get("hostProcess"):
            v("baseline", "hostProcess", f"{p}.securityContext.windowsOptions.hostProcess", "must be unset or false")
    # Host namespaces: sharing the node's network, PID or IPC namespace escapes isolation.
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(f):
            v("baseline", "hostNamespaces", f"spec.{f}", "must be unset or false")
    for p, c in cs:
        sc = c.get("securityContext") or {}
        # Privileged containers disable nearly every isolation mechanism.
        if sc.get("privileged"):
            v("baseline", "privileged", f"{p}.securityContext.privileged", "must be unset or false")
        # Capabilities beyond the default set.
        added = set((sc.get("capabilities") or {}).get("add") or []) - {""}
        if added - BASELINE_CAPS:
            v("baseline", "capabilities", f"{p}.securityContext.capabilities.add",
              f"{sorted(added - BASELINE_CAPS)} not in the baseline list {sorted(BASELINE_CAPS)}")
        # Host ports tie a pod to a node's port and bypass network policy.
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                v("baseline", "hostPorts", f"{p}.ports[{port.get('name') or port.get('containerPort')}].hostPort",
                  "must be unset or 0")
        # /proc mount type: Unmasked exposes the host's /proc paths.
        if sc.get("procMount") not in (None, "Default"):
            v("baseline", "procMount", f"{p}.securityContext.procMount", "must be unset or Default")
    # HostPath volumes reach the node's filesystem.
    for vol in spec.get("volumes") or []:
        if "hostPath" in vol:
            v("baseline", "hostPathVolumes", f"spec.volumes[{vol.get('name')}].hostPath", "must be unset")
    # AppArmor: overriding or disabling the default profile is refused.
    scopes = [("spec.securityContext", psc)] + [(f"{p}.securityContext", c.get("securityContext") or {}) for p, c in cs]
    for p, sc in scopes:
        t = (sc.get("appArmorProfile") or {}).get("type")
        if t not in (None, "RuntimeDefault", "Localhost"):
            v("baseline", "appArmor", f"{p}.appArmorProfile.type", "must be unset, RuntimeDefault or Localhost")
    for k, val in ((meta or {}).get("annotations") or {}).items():
        if k.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
                val == "runtime/default" or val.startswith("localhost/")):
            v("baseline", "appArmor", f"metadata.annotations[{k}]", "must be runtime/default or localhost/*")
    # SELinux: custom types, users and roles can relax the confinement.
    for p, sc in scopes:
        se = sc.get("seLinuxOptions") or {}
        if se.get("type", "") not in SELINUX_TYPES:
            v("baseline", "seLinux", f"{p}.seLinuxOptions.type", f"must be one of {sorted(SELINUX_TYPES - {''})}")
        for f in ("user", "role"):
            if se.get(f):
                v("baseline", "seLinux", f"{p}.seLinuxOptions.{f}", "must be unset")
    # Seccomp: Unconfined turns the syscall filter off.
    for p, sc in scopes:
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            v("baseline", "seccompBaseline", f"{p}.seccompProfile.type", "must not be Unconfined")
    # Sysctls: only the safe, namespaced ones.
    for s in psc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            v("baseline", "sysctls", f"spec.securityContext.sysctls[{s.get('name')}]", f"not a safe sysctl ({sorted(SAFE_SYSCTLS)})")

    # ---- restricted ------------------------------------------------------------------------
    # Volume types: only those that cannot reach the node.
    for vol in spec.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if kinds - RESTRICTED_VOLUMES:
            v("restricted", "volumeTypes", f"spec.volumes[{vol.get('name')}]",
              f"{sorted(kinds - RESTRICTED_VOLUMES)} not in {sorted(RESTRICTED_VOLUMES)}")
    for p, c in cs:
        sc = c.get("securityContext") or {}
        # Privilege escalation (setuid binaries, file capabilities) must be off explicitly.
        if sc.get("allowPrivilegeEscalation") is not False:
            v("restricted", "allowPrivilegeEscalation", f"{p}.securityContext.allowPrivilegeEscalation", "must be false")
        # Running as non-root: set on the pod, or on every container; never false.
        if sc.get("runAsNonRoot") is False or (sc.get("runAsNonRoot") is not True and psc.get("runAsNonRoot") is not True):
            v("restricted", "runAsNonRoot", f"{p}.securityContext.runAsNonRoot", "must be true (here or in spec.securityContext)")
        # Seccomp: RuntimeDefault or Localhost, on the pod or on every container.
        t = (sc.get("seccompProfile") or {}).get("type") or (psc.get("seccompProfile") or {}).get("type")
        if t not in ("RuntimeDefault", "Localhost"):
            v("restricted", "seccompRestricted", f"{p}.securityContext.seccompProfile.type",
              "must be RuntimeDefault or Localhost (here or in spec.securityContext)")
        # Capabilities: drop ALL, add at most NET_BIND_SERVICE.
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            v("restricted", "capabilitiesRestricted", f"{p}.securityContext.capabilities.drop", "must include ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE", ""}:
            v("restricted", "capabilitiesRestricted", f"{p}.securityContext.capabilities.add",
              f"{sorted(set(caps['add']) - {'NET_BIND_SERVICE'})}: only NET_BIND_SERVICE may be added")
    if psc.get("runAsNonRoot") is False:
        v("restricted", "runAsNonRoot", "spec.securityContext.runAsNonRoot", "must not be false")
    # Running as a non-root user: runAsUser 0 is refused wherever it is set.
    for p, sc in scopes:
        if sc.get("runAsUser") == 0:
            v("restricted", "runAsUser", f"{p}.runAsUser", "must not be 0")
    return out


def breaks(violations, level):
    """The violations that keep a pod out of `level`."""
    if level == "privileged":
        return []
    return [x for x in violations if level == "restricted" or x[0] == "baseline"]


def strictest(violations):
    return next(l for l in LEVELS if not breaks(violations, l))


def pod_templates(docs):
    for d in docs:
        path = TEMPLATE_PATHS.get(d.get("kind"))
        if path is None:
            continue
        t = d
        for k in path:
            t = (t or {}).get(k)
        yield d, (t or {}).get("metadata") or {}, (t or {}).get("spec") or {}


def check_rendering(name, docs):
    errors = []
    namespaces = {d["metadata"]["name"]: (d["metadata"].get("labels") or {})
                  for d in docs if d.get("kind") == "Namespace"}
    need = {}  # namespace → strictest level all its pods meet
    for ns, labels in namespaces.items():
        lvl = labels.get("pod-security.kubernetes.io/enforce")
        if lvl not in LEVELS:
            errors.append(f"{name}: Namespace/{ns}: metadata.labels[pod-security.kubernetes.io/enforce]: "
                          f"{lvl!r}, expected one of {LEVELS}")
    for d, meta, spec in pod_templates(docs):
        ns = d["metadata"].get("namespace") or "default"
        obj = f"{d['kind']}/{d['metadata']['name']}"
        if ns not in namespaces:
            errors.append(f"{name}: {obj}: metadata.namespace {ns!r}: not created by this rendering, "
                          "so its Pod Security level is unknown")
            continue
        vs = check(meta, spec)
        need[ns] = LEVELS[max(LEVELS.index(need.get(ns, "restricted")), LEVELS.index(strictest(vs)))]
        for mode in ("enforce", "warn", "audit"):
            lvl = namespaces[ns].get(f"pod-security.kubernetes.io/{mode}")
            if lvl not in LEVELS:
                continue
            for level, rule, field, what in breaks(vs, lvl):
                errors.append(f"{name}: {obj} (namespace {ns} {mode}s {lvl}): {field}: {what} "
                              f"[Pod Security {level}: {rule}]")
    for ns, lvl in need.items():
        have = namespaces[ns].get("pod-security.kubernetes.io/enforce")
        if have in LEVELS and LEVELS.index(have) > LEVELS.index(lvl):
            errors.append(f"{name}: Namespace/{ns}: metadata.labels[pod-security.kubernetes.io/enforce]: "
                          f"{have}, but every pod in it meets {lvl}: enforce {lvl}")
    return errors


def self_test(path):
    """Each case's pod spec must break exactly the rule ids it lists (at its level)."""
    cases = yaml.safe_load(open(path))
    failures = 0
    for c in cases:
        got = sorted({rule for _, rule, _, _ in breaks(check(c.get("metadata") or {}, c["spec"]), c["level"])})
        want = sorted(c["expect"])
        if got != want:
            failures += 1
            print(f"error: {path}: case {c['name']!r} at {c['level']}: rules {got}, expected {want}")
    print(f"pod security self-test: {len(cases) - failures} passed, {failures} failed")
    return failures


def main():
    if sys.argv[1] == "--self-test":
        sys.exit(1 if self_test(sys.argv[2]) else 0)
    docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
    errors = check_rendering(sys.argv[1], docs)
    levels = {d["metadata"]["name"]: (d["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce")
              for d in docs if d.get("kind") == "Namespace"}
    print(f"{sys.argv[1]}: pod security: namespaces {levels}, "
          f"{sum(1 for _ in pod_templates(docs))} pod templates, {len(errors)} problems")
    for e in errors:
        print("error:", e)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
