"""Checks of deploy/kubernetes/ that kubernetes-validate cannot make.

Usage: manifests.py MANIFEST_DIR SCHEMA CONFIG_OUT

- kustomization.yaml lists every manifest (secret.example.yaml excepted) and
  nothing that is missing;
- the ServiceMonitor (a CRD, no built-in schema) against SCHEMA;
- the names that tie the objects together: Service -> pod labels and container
  port, ServiceMonitor -> Service labels and port, volumes -> ConfigMap,
  Secrets (each volume's Secret defined in secret.example.yaml) and PVC;
- a Deployment or Job with more than one pod takes state.database from the
  environment (a shared PostgreSQL, never a per-pod sqlite file) and mounts
  no PersistentVolumeClaim;
- terminationGracePeriodSeconds above the config's limits.drain_timeout;
- writes the ConfigMap's config.toml to CONFIG_OUT for `ocimirror config check`.
Each problem is printed naming the file and field; exit status 1 if any.
"""

import json
import pathlib
import re
import sys
import tomllib

import jsonschema
import yaml

UNLISTED = {"kustomization.yaml", "secret.example.yaml"}
problems = []


def problem(path, what):
    problems.append(f"{path.name}: {what}")


def load(path):
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        problem(path, f"not YAML: {e}")
        return []
    return docs


def seconds(duration):
    """The humantime subset used in configs: e.g. "60s", "2m", "1h 30m"."""
    units = {"s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)\s*([smh])\b", duration)
    if not parts or re.sub(r"(\d+)\s*[smh]\b|\s", "", duration):
        raise ValueError(f"unsupported duration {duration!r}")
    return sum(int(n) * units[u] for n, u in parts)


def main():
    root = pathlib.Path(sys.argv[1])
    schema = json.loads(pathlib.Path(sys.argv[2]).read_text())
    config_out = pathlib.Path(sys.argv[3])

    objects = {}  # kind -> list of (path, object)
    for path in sorted(root.glob("*.yaml")):
        for doc in load(path):
            objects.setdefault(doc.get("kind"), []).append((path, doc))

    def one(kind):
        found = objects.get(kind, [])
        if len(found) != 1:
            problems.append(f"expected one {kind}, found {len(found)}")
            return None, {}
        return found[0]

    kpath, kust = one("Kustomization")
    if kpath:
        listed = set(kust.get("resources", []))
        present = {p.name for p in root.glob("*.yaml")} - UNLISTED
        for name in sorted(listed - present):
            problem(kpath, f"resources: {name} does not exist")
        for name in sorted(present - listed):
            problem(kpath, f"resources: {name} is not listed")

    spath, monitor = one("ServiceMonitor")
    if spath:
        for e in jsonschema.Draft7Validator(schema).iter_errors(monitor):
            where = ".".join(str(p) for p in e.absolute_path) or "(top)"
            problem(spath, f"{where}: {e.message}")

    cpath, configmap = one("ConfigMap")
    config_text = configmap.get("data", {}).get("config.toml")
    if cpath and config_text is None:
        problem(cpath, "data: no config.toml key")
    config = {}
    if config_text is not None:
        config_out.parent.mkdir(parents=True, exist_ok=True)
        config_out.write_text(config_text)
        try:
            config = tomllib.loads(config_text)
        except tomllib.TOMLDecodeError as e:
            problem(cpath, f"data.config.toml: not TOML: {e}")

    svpath, service = one("Service")
    def names_of(kind):
        return {o.get("metadata", {}).get("name") for _, o in objects.get(kind, [])}

    names = {
        "ConfigMap": {configmap.get("metadata", {}).get("name")},
        "PersistentVolumeClaim": names_of("PersistentVolumeClaim"),
        "Secret": names_of("Secret"),
    }
    for kind in ("Deployment", "Job"):
        path, workload = one(kind)
        if not path:
            continue
        pod = workload.get("spec", {}).get("template", {})
        spec = pod.get("spec", {})
        for v in spec.get("volumes", []):
            for key, kind_of, field in (
                ("configMap", "ConfigMap", "name"),
                ("secret", "Secret", "secretName"),
                ("persistentVolumeClaim", "PersistentVolumeClaim", "claimName"),
            ):
                if key in v and v[key].get(field) not in names[kind_of]:
                    problem(path, f"volume {v['name']}: {v[key].get(field)!r} is not a {kind_of} of {sorted(names[kind_of])}")
        pods = workload.get("spec", {}).get("replicas" if kind == "Deployment" else "parallelism", 1)
        if pods > 1:
            env = {e.get("name") for c in spec.get("containers", []) for e in c.get("env", [])}
            if not env & {"OCIMIRROR_STATE__DATABASE", "OCIMIRROR_STATE__DATABASE_FILE"}:
                problem(path, f"{pods} pods but no OCIMIRROR_STATE__DATABASE(_FILE) env: they need one shared PostgreSQL")
            if any("persistentVolumeClaim" in v for v in spec.get("volumes", [])):
                problem(path, f"{pods} pods share a PersistentVolumeClaim: the state belongs in PostgreSQL")
        if kind != "Deployment":
            continue
        labels = pod.get("metadata", {}).get("labels", {})
        selector = service.get("spec", {}).get("selector", {})
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            problem(svpath, f"spec.selector {selector} does not select the Deployment's pods {labels}")
        ports = {p.get("name") for c in spec.get("containers", []) for p in c.get("ports", [])}
        for p in service.get("spec", {}).get("ports", []):
            if p.get("targetPort") not in ports:
                problem(svpath, f"port {p.get('name')}: targetPort {p.get('targetPort')!r} is not a container port of the Deployment")
        try:
            drain = seconds(config.get("limits", {}).get("drain_timeout", "30s"))
        except ValueError as e:
            problem(cpath, f"data.config.toml: limits.drain_timeout: {e}")
            continue
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if grace <= drain:
            problem(path, f"terminationGracePeriodSeconds {grace} is not above limits.drain_timeout ({drain}s)")

    if spath and svpath:
        svc_labels = service.get("metadata", {}).get("labels", {})
        match = monitor.get("spec", {}).get("selector", {}).get("matchLabels", {})
        if not match or any(svc_labels.get(k) != v for k, v in match.items()):
            problem(spath, f"spec.selector.matchLabels {match} does not select the Service {svc_labels}")
        svc_ports = {p.get("name") for p in service.get("spec", {}).get("ports", [])}
        for e in monitor.get("spec", {}).get("endpoints", []):
            if e.get("port") not in svc_ports:
                problem(spath, f"endpoints: port {e.get('port')!r} is not a port of the Service")

    for p in problems:
        print(f"deploy/kubernetes/{p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
