"""The deployment examples stay true: compose.yaml, docs/deploy/kubernetes.yaml and
docs/deploy/nomad.hcl are checked, not applied.

- Kubernetes: every document against Kubernetes' own schemas (kubernetes-validate, strict:
  an unknown field is an error).
- Nomad: the job file parses as HCL, and its tasks are the three the service has.
- All three: every ORCHESTRATOR_ variable they set is a setting the service reads, and every
  command they run is a command of the `orchestrator` CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2
import kubernetes_validate
import pytest
import typer.main
import yaml

from orchestrator.cli.app import app
from orchestrator.config import Settings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "docs/deploy/kubernetes.yaml"
NOMAD = ROOT / "docs/deploy/nomad.hcl"
COMPOSE = ROOT / "compose.yaml"
KUBERNETES_VERSION = "1.30"
"""The oldest Kubernetes release still widely run that the example is checked against."""


def settings_read() -> set[str]:
    """The ORCHESTRATOR_ names the service reads (field names and their aliases)."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"ORCHESTRATOR_{name.upper()}")
        alias = field.validation_alias
        names.update(str(choice) for choice in getattr(alias, "choices", []) or ([alias] if alias else []))
    return names


def commands() -> set[str]:
    group = typer.main.get_group(app)
    return set(group.commands)


def kubernetes_documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(KUBERNETES.read_text()) if d]


def environment_set(path: Path) -> set[str]:
    """The ORCHESTRATOR_ variables a deployment gives the service's processes."""
    names: set[str] = set()
    if path == COMPOSE:
        for service in yaml.safe_load(path.read_text())["services"].values():
            names.update(service.get("environment") or {})
    elif path == KUBERNETES:
        for document in kubernetes_documents():
            names.update(document.get("data") or {})
            for container in (
                document.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
            ):
                names.update(e["name"] for e in container.get("env", []))
    else:
        for task in nomad_tasks().values():
            for env in task.get("env", []):
                names.update(env)
    return {name for name in names if name.startswith("ORCHESTRATOR_")}


def test_the_kubernetes_example_passes_kubernetes_schemas() -> None:
    documents = kubernetes_documents()
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == [
        "ConfigMap",
        "DaemonSet",
        "Deployment",
        "Deployment",
        "PersistentVolumeClaim",
        "Service",
        "Service",
    ]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_validator_refuses_a_wrong_manifest() -> None:
    """The check above can fail: a misspelt field and a wrong type are both caught."""
    worker = next(d for d in kubernetes_documents() if d["kind"] == "DaemonSet")
    worker["spec"]["template"]["spec"]["hostNetwrk"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)
    del worker["spec"]["template"]["spec"]["hostNetwrk"]
    worker["spec"]["template"]["spec"]["hostNetwork"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_worker_runs_on_every_node_as_its_own_host() -> None:
    documents = {(d["kind"], d["metadata"]["name"]): d for d in kubernetes_documents()}
    pod = documents["DaemonSet", "website-orchestrator-worker"]["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    (worker,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["ORCHESTRATOR_HOST_ID"] == "$(NODE_NAME)" and env["ORCHESTRATOR_HOST_ADDRESS"] == "$(NODE_IP)"
    assert worker["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"]
    for kind, name in (
        ("DaemonSet", "website-orchestrator-worker"),
        ("Deployment", "website-orchestrator-api"),
        ("Deployment", "website-orchestrator-gateway"),
    ):
        (container,) = documents[kind, name]["spec"]["template"]["spec"]["containers"]
        assert container["command"][0] == "orchestrator" and container["command"][1] in commands()


def nomad_tasks() -> dict[str, dict[str, Any]]:
    """task name → its block, over every job and group of the Nomad example."""
    with NOMAD.open() as file:
        parsed = hcl2.load(file, serialization_options=hcl2.SerializationOptions(strip_string_quotes=True))
    tasks = {}
    for job in parsed["job"]:
        for group_blocks in job.values():
            for group in group_blocks["group"]:
                for body in group.values():
                    for task in body["task"]:
                        tasks.update(task)
    return tasks


def test_the_nomad_example_runs_the_three_commands_in_docker() -> None:
    tasks = nomad_tasks()
    assert sorted(tasks) == ["api", "gateway", "worker"]
    for name, task in tasks.items():
        (config,) = task["config"]
        assert task["driver"] == "docker" and config["command"] == "orchestrator"
        assert config["args"][0] == name and name in commands()
    (worker,) = tasks["worker"]["config"]
    assert worker["network_mode"] == "host" and worker["cap_add"] == ["net_admin"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in worker["volumes"]


@pytest.mark.parametrize("path", [COMPOSE, KUBERNETES, NOMAD], ids=lambda p: p.name)
def test_every_setting_a_deployment_sets_is_one_the_service_reads(path: Path) -> None:
    named = environment_set(path)
    assert named, f"{path.name} sets no setting"
    assert named - settings_read() == set()


def test_the_compose_file_runs_cli_commands_and_builds_every_image_here() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert sorted(services) == ["api", "gateway", "postgres", "redis", "worker"]
    for name in ("api", "gateway", "worker"):
        assert services[name]["command"][:2] == ["orchestrator", name] and name in commands()
    for name, service in services.items():
        assert service["image"].startswith("website-orchestrator/"), name  # no registry's image
        assert service["build"]["dockerfile"] == "images/service/Dockerfile", name
    assert services["redis"]["network_mode"] == services["postgres"]["network_mode"] == "none"
