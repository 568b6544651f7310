"""The example homelab in ``manifests/`` loads cleanly and says what the docs say it does."""

from __future__ import annotations

import pathlib
import re
from typing import TypeVar

import pytest

from nebula import crds, manifests, resources
from nebula.manifests import parsing
from nebula.resources import fields
from nebula.resources.base import ResourceKey
from nebula.resources.bot_config import BotConfig
from nebula.resources.comfy_workflow import ComfyWorkflow
from nebula.resources.git_source import GitSource
from nebula.resources.nebula_model import NebulaModel
from nebula.resources.nebula_node import NebulaNode
from nebula.resources.nebula_service import NebulaService
from nebula.resources.pipeline import Pipeline

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "manifests"
T = TypeVar("T")

# Independent of the model's own rule on purpose: the example must pass a stricter reading.
SECRET_WORDS = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|PRIVATE|CREDENTIAL|_URL$|DSN", re.I)


@pytest.fixture(scope="module")
def example() -> manifests.ManifestSet:
    return manifests.load_path(EXAMPLE, shown_as="manifests")


def of_kind(example: manifests.ManifestSet, cls: type[T]) -> dict[str, T]:
    return {key.name: r for key, r in example.resources.items() if isinstance(r, cls)}


def test_example_loads_without_a_single_error(example: manifests.ManifestSet) -> None:
    assert [str(e) for e in example.errors] == []


def test_example_declares_every_kind(example: manifests.ManifestSet) -> None:
    assert set(example.count_by_kind()) == set(resources.KINDS)


def test_every_example_file_declares_something_and_opens_with_a_comment() -> None:
    files = manifests.manifest_files(EXAMPLE)
    assert len(files) >= 8
    for path in files:
        loaded = manifests.load_file(path.name, path.read_bytes())
        assert loaded.resources, path
        assert path.read_text().startswith("#"), f"{path} should teach with a leading comment"


@pytest.mark.parametrize("path", manifests.manifest_files(EXAMPLE), ids=lambda p: p.name)
def test_every_example_document_passes_its_generated_crd_schema(path: pathlib.Path) -> None:
    # What kubectl apply would send: the YAML as written, not the model's dump of it.
    for document in parsing.parse(path.read_text()):
        crd = crds.crd(resources.KINDS[document.data["kind"]])
        problems = crds.errors(crd, document.data)
        assert problems == [], f"{path.name} document {document.index}: {problems}"


def test_example_files_show_where_each_resource_was_declared(
    example: manifests.ManifestSet,
) -> None:
    origin = example.origins[ResourceKey("NebulaNode", None, "windows-vm")]
    assert origin.file == "manifests/nodes.yaml"
    assert origin.document == 2
    workflow = example.origins[ResourceKey("ComfyWorkflow", "default", "upscale")]
    assert workflow.file == "manifests/workflows/upscale.yaml"


def test_three_nodes_have_the_cloud_home_and_windows_shapes(
    example: manifests.ManifestSet,
) -> None:
    nodes = of_kind(example, NebulaNode)
    assert set(nodes) == {"linode-vps", "home-ubuntu", "windows-vm"}

    vps = nodes["linode-vps"].spec
    assert (vps.role, vps.os, vps.runtime) == ("control", "linux", "k3s")
    assert {a.type for a in vps.addresses} == {"public", "tailscale"}
    assert vps.hardware.gpu is None

    home = nodes["home-ubuntu"].spec
    assert (home.role, home.os, home.runtime) == ("ai", "linux", "k3s")
    assert {a.type for a in home.addresses} == {"lan", "tailscale"}
    assert home.hardware.gpu is not None and home.hardware.gpu.vendor == "nvidia"

    vm = nodes["windows-vm"].spec
    assert (vm.os, vm.runtime) == ("windows", "docker")
    assert [a.type for a in vm.addresses] == ["tailscale"]
    gpu = vm.hardware.gpu
    assert gpu is not None and gpu.vendor == "nvidia" and "RTX" in (gpu.model or "")
    assert gpu.min_vram is not None and fields.parse_quantity(gpu.min_vram) >= 8 * 2**30


def test_nodes_are_cluster_scoped_and_everything_else_is_in_the_default_namespace(
    example: manifests.ManifestSet,
) -> None:
    for key in example.resources:
        assert key.namespace == (None if key.kind == "NebulaNode" else "default"), key


def test_services_sit_on_the_vps_and_at_home(example: manifests.ManifestSet) -> None:
    services = of_kind(example, NebulaService)
    for name in ("dashboard", "discord-bot", "stream-bot", "caddy"):
        assert services[name].spec.placement.node == "linode-vps", name
    for name in ("postgres", "redis", "ollama"):
        assert services[name].spec.placement.node == "home-ubuntu", name
    comfy = services["comfyui"].spec.placement
    assert comfy.gpu and comfy.node_selector and comfy.min_vram is not None
    for name in ("postgres", "redis", "ollama", "comfyui"):
        assert services[name].spec.volumes, f"{name} keeps its data in a volume"
        assert services[name].spec.ports and services[name].spec.health_check, name


def test_dashboard_uses_the_data_and_ai_services_behind_a_domain(
    example: manifests.ManifestSet,
) -> None:
    dashboard = of_kind(example, NebulaService)["dashboard"].spec
    assert set(dashboard.uses) == {"postgres", "redis", "ollama", "comfyui"}
    assert dashboard.domains and dashboard.health_check is not None
    assert dashboard.health_check.http is not None


def test_no_environment_variable_carries_a_literal_secret(
    example: manifests.ManifestSet,
) -> None:
    checked = 0
    for name, service in of_kind(example, NebulaService).items():
        for var in service.spec.env:
            if var.value is None:
                assert var.secret_ref is not None
                continue
            checked += 1
            assert not SECRET_WORDS.search(var.name), f"{name}: {var.name} should be a secretRef"
            assert not re.search(r"://[^/\s]*@", var.value), f"{name}: {var.name} has credentials"
    assert checked > 0


def test_secret_bearing_variables_come_from_secret_refs(example: manifests.ManifestSet) -> None:
    services = of_kind(example, NebulaService)
    refs = {(n, v.name) for n, s in services.items() for v in s.spec.env if v.secret_ref}
    assert ("dashboard", "DATABASE_URL") in refs
    assert ("discord-bot", "DISCORD_TOKEN") in refs
    assert ("postgres", "POSTGRES_PASSWORD") in refs


def test_models_cover_ollama_and_every_comfyui_folder_the_workflows_need(
    example: manifests.ManifestSet,
) -> None:
    models = of_kind(example, NebulaModel)
    ollama = [m for m in models.values() if m.spec.provider == "ollama"]
    assert len(ollama) >= 3
    assert "llama3.1:8b" in {m.spec.model for m in ollama}
    comfy = {m.spec.folder for m in models.values() if m.spec.provider == "comfyui"}
    assert {"checkpoints", "loras", "upscale_models"} <= comfy
    for model in models.values():
        if model.spec.provider == "comfyui":
            assert model.spec.url is not None and model.spec.url.startswith("https://")
            assert model.spec.size is not None


def test_three_workflows_are_real_comfyui_graphs(example: manifests.ManifestSet) -> None:
    workflows = of_kind(example, ComfyWorkflow)
    classes = {n: {g.class_type for g in w.spec.graph.values()} for n, w in workflows.items()}
    assert {"EmptyLatentImage", "KSampler", "SaveImage"} <= classes["text-to-image"]
    assert {"LoadImage", "VAEEncode", "KSampler"} <= classes["image-to-image"]
    assert {"UpscaleModelLoader", "ImageUpscaleWithModel"} <= classes["upscale"]
    models = of_kind(example, NebulaModel)
    for name, workflow in workflows.items():
        assert workflow.spec.service == "comfyui"
        assert workflow.spec.models and workflow.spec.parameters, name
        assert all(models[m].spec.provider == "comfyui" for m in workflow.spec.models)
    exposed = {p.name for p in workflows["text-to-image"].spec.parameters}
    assert {"prompt", "negative_prompt", "seed", "steps", "cfg", "width", "height"} <= exposed
    assert {"image", "denoise"} <= {p.name for p in workflows["image-to-image"].spec.parameters}


def test_bot_config_serves_discord_guilds_and_three_stream_platforms(
    example: manifests.ManifestSet,
) -> None:
    (config,) = of_kind(example, BotConfig).values()
    assert config.spec.discord is not None and config.spec.stream is not None
    for guild in config.spec.discord.guilds:
        assert re.fullmatch(r"[0-9]{17,19}", guild.id)
    first = config.spec.discord.guilds[0]
    assert first.features.tickets.enabled and first.features.stream_notifications.enabled
    assert first.permissions.open_changes and first.identity.nickname
    assert {p.platform for p in config.spec.stream.platforms} == {"twitch", "youtube", "kick"}
    assert config.spec.stream.go_live


def test_content_pipeline_waits_for_approval_before_posting(
    example: manifests.ManifestSet,
) -> None:
    pipeline = of_kind(example, Pipeline)["daily-content"].spec
    assert pipeline.schedule and pipeline.timezone != "UTC"
    assert pipeline.concurrency == "Forbid"
    assert all(p.default for p in pipeline.parameters)
    actions = [step.action for step in pipeline.steps]
    assert {"llm", "comfyui", "approval", "post"} <= set(actions)
    assert actions.index("approval") < actions.index("post")
    (post,) = [s for s in pipeline.steps if s.post]
    (approval,) = [s for s in pipeline.steps if s.approval]
    assert approval.name in post.needs


def test_release_pipeline_deploys_only_after_approval(example: manifests.ManifestSet) -> None:
    steps = {s.name: s for s in of_kind(example, Pipeline)["release-dashboard"].spec.steps}
    (deploy,) = [s for s in steps.values() if s.deploy]
    assert any(steps[n].approval for n in deploy.needs)


def test_git_source_follows_main_of_a_github_repository(example: manifests.ManifestSet) -> None:
    (source,) = of_kind(example, GitSource).values()
    assert source.spec.url.startswith("https://github.com/")
    assert source.spec.ref.branch == "main"
    assert source.spec.path == "manifests"
    assert source.spec.secret_ref is not None and source.spec.webhook_secret_ref is not None


def test_example_loads_the_same_into_another_namespace() -> None:
    other = manifests.load_path(EXAMPLE, namespace="homelab")
    assert other.errors == []
    assert {k.namespace for k in other.resources if k.kind != "NebulaNode"} == {"homelab"}
