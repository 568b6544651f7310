"""Round-trip edits change exactly the lines they mean to and keep everything else."""

from __future__ import annotations

import difflib

import pytest

from nebula import errors
from nebula.manifests import editing, parsing
from nebula.resources import ResourceKey

FILE = """\
# The machines of the homelab.
---
apiVersion: nebula.dev/v1alpha1
kind: NebulaNode
metadata:
  name: home-gpu   # the box under the stairs
spec:
  role: ai
  runtime: k3s
  addresses:
  - type: lan        # LAN first
    address: "192.168.1.10"
  labels: {gpu: rtx-3090, site: home}
---
# Models, indented differently on purpose.
apiVersion: nebula.dev/v1alpha1
kind: NebulaModel
metadata:
    name: llama
    namespace: ai
spec:
    provider: ollama
    model: 'llama3.1:8b'
    placement:
        nodes:
          - home-gpu   # the GPU box
          - windows-vm
"""
NODE = ResourceKey("NebulaNode", None, "home-gpu")
MODEL = ResourceKey("NebulaModel", "ai", "llama")


def _changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_setting_a_field_changes_only_that_line() -> None:
    edited = editing.edit(FILE, NODE, lambda doc: editing.set_path(doc, ["spec", "role"], "worker"))

    assert _changed_lines(FILE, edited) == ["-  role: ai", "+  role: worker"]


def test_appending_to_a_list_keeps_the_documents_own_indentation_and_comments() -> None:
    edited = editing.edit(
        FILE, MODEL, lambda doc: editing.add_to_list(doc, ["spec", "placement", "nodes"], "cloud")
    )

    assert _changed_lines(FILE, edited) == ["+          - cloud"]
    assert "- home-gpu   # the GPU box" in edited


def test_an_equal_value_or_a_present_item_changes_nothing() -> None:
    same = editing.edit(FILE, NODE, lambda doc: editing.set_path(doc, ["spec", "role"], "ai"))
    again = editing.edit(
        same,
        MODEL,
        lambda doc: editing.add_to_list(doc, ["spec", "placement", "nodes"], "home-gpu"),
    )

    assert again == FILE


def test_removing_from_a_list_removes_one_line() -> None:
    edited = editing.edit(
        FILE,
        MODEL,
        lambda doc: editing.remove_from_list(doc, ["spec", "placement", "nodes"], "windows-vm"),
    )

    assert _changed_lines(FILE, edited) == ["-          - windows-vm"]


def test_new_mappings_are_created_on_the_way_to_a_field() -> None:
    edited = editing.edit(
        FILE,
        NODE,
        lambda doc: editing.set_path(doc, ["spec", "hardware", "gpu", "vendor"], "nvidia"),
    )

    assert parsing.parse(edited)[0].data["spec"]["hardware"] == {"gpu": {"vendor": "nvidia"}}
    assert _changed_lines(FILE, edited) == ["+  hardware:", "+    gpu:", "+      vendor: nvidia"]


def test_quotes_and_flow_style_survive_an_edit_elsewhere_in_the_document() -> None:
    edited = editing.edit(
        FILE, NODE, lambda doc: editing.set_path(doc, ["spec", "runtime"], "docker")
    )

    assert 'address: "192.168.1.10"' in edited
    assert "labels: {gpu: rtx-3090, site: home}" in edited
    assert edited.startswith("# The machines of the homelab.\n---\n")


def test_editing_a_resource_the_file_does_not_declare_is_refused() -> None:
    with pytest.raises(errors.ResourceNotFound, match="NebulaModel/default/llama"):
        editing.edit(FILE, ResourceKey("NebulaModel", "default", "llama"), lambda doc: None)


def test_documents_lists_every_resource_of_a_file() -> None:
    assert list(editing.documents(FILE)) == [NODE, MODEL]


def test_an_appended_document_loads_back_and_leaves_the_rest_untouched() -> None:
    data = {
        "apiVersion": "nebula.dev/v1alpha1",
        "kind": "NebulaModel",
        "metadata": {"name": "qwen", "namespace": "ai"},
        "spec": {"provider": "ollama", "model": "qwen2.5:7b", "placement": {"nodes": ["home-gpu"]}},
    }
    edited = editing.append_document(FILE, data)

    assert edited.startswith(FILE)
    assert parsing.parse(edited)[-1].data == data


def test_removing_the_first_document_keeps_the_files_opening_comment() -> None:
    edited = editing.remove_document(FILE, NODE)

    assert list(editing.documents(edited)) == [MODEL]
    assert edited.startswith("# The machines of the homelab.\n")
    with pytest.raises(errors.ResourceNotFound):
        editing.remove_document(edited, NODE)
