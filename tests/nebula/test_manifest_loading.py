"""The manifest loader: every error located, good resources kept, YAML 1.2, folders walked."""

from __future__ import annotations

import os
import pathlib
import textwrap

import pytest

from nebula import errors, manifests
from nebula.manifests import parsing
from nebula.resources.base import ResourceKey


def yaml(text: str) -> bytes:
    return textwrap.dedent(text).lstrip("\n").encode()


NODE = yaml(
    """
    apiVersion: nebula.dev/v1alpha1
    kind: NebulaNode
    metadata:
      name: home-gpu
    spec:
      role: ai
      runtime: k3s
      addresses:
        - {type: lan, address: 192.168.1.50}
    """
)
MODEL = yaml(
    """
    apiVersion: nebula.dev/v1alpha1
    kind: NebulaModel
    metadata:
      name: llama
    spec:
      provider: ollama
      model: "llama3.1:8b"
      placement:
        nodes: [home-gpu]
    """
)


def errors_of(found: manifests.ManifestSet | manifests.LoadedFile) -> list[str]:
    return [str(e) for e in found.errors]


def assemble(**files: bytes) -> manifests.ManifestSet:
    """Loads files given as name=bytes (``_`` in a name stands for ``.``) into one set."""
    return manifests.assemble(
        manifests.load_file(name.replace("_", "."), data) for name, data in files.items()
    )


# --- Every error, and nothing applied ---------------------------------------------------------


def test_every_error_of_a_file_is_reported_not_only_the_first() -> None:
    text = yaml(
        """
        apiVersion: nebula.dev/v1alpha1
        kind: NebulaService
        metadata:
          name: Dashboard
        spec:
          image: "ghcr.io/Example/dash"
          replicas: many
          ports:
            - {name: http, port: 70000}
        ---
        apiVersion: nebula.dev/v1alpha1
        kind: NebulaModel
        metadata:
          name: llama
        spec:
          provider: olama
          model: "llama3.1:8b"
        """
    )
    loaded = manifests.load_file("all.yaml", text)
    assert [(e.line, e.field) for e in loaded.errors] == [
        (4, "metadata.name"),
        (6, "spec.image"),
        (7, "spec.replicas"),
        (9, "spec.ports[0].port"),
        (16, "spec.provider"),
    ]


def test_one_bad_document_keeps_the_good_resources_but_the_set_is_refused() -> None:
    bad = MODEL.replace(b"provider: ollama", b"provider: openai")
    good = MODEL.replace(b"name: llama", b"name: mistral")
    found = assemble(all_yaml=NODE + b"---\n" + bad + b"---\n" + good)
    assert list(found.resources) == [
        ResourceKey("NebulaNode", None, "home-gpu"),
        ResourceKey("NebulaModel", "default", "mistral"),
    ]
    assert errors_of(found) == [
        "all.yaml:16:3: spec.provider: Input should be 'ollama' or 'comfyui' (got 'openai')"
    ]
    # The caller applies nothing: the set says so by raising, with every error in it.
    with pytest.raises(errors.InvalidManifests) as raised:
        found.raise_for_errors()
    assert raised.value.errors == found.errors


def test_a_valid_set_raises_nothing_and_keeps_every_resource() -> None:
    found = assemble(nodes_yaml=NODE, models_yaml=MODEL)
    found.raise_for_errors()
    assert set(found.resources) == {
        ResourceKey("NebulaNode", None, "home-gpu"),
        ResourceKey("NebulaModel", "default", "llama"),
    }
    assert found.files == 2


def test_reference_to_a_declared_but_invalid_resource_is_not_reported_twice() -> None:
    # The node is declared but invalid (a bad role): the model placed on it must not get a
    # second, misleading "no NebulaNode named" error on top of the node's own error.
    bad_node = NODE.replace(b"role: ai", b"role: gpu")
    found = assemble(nodes_yaml=bad_node, models_yaml=MODEL)
    assert [(e.file, e.field) for e in found.errors] == [("nodes.yaml", "spec.role")]


def test_reference_to_an_invalid_model_in_the_same_file_is_not_reported_twice() -> None:
    text = yaml(
        """
        apiVersion: nebula.dev/v1alpha1
        kind: NebulaModel
        metadata:
          name: sdxl
        spec:
          provider: comfyui
          model: sd_xl_base_1.0.safetensors
          folder: checkpoints
          url: ftp://example.com/sd_xl_base_1.0.safetensors
        ---
        apiVersion: nebula.dev/v1alpha1
        kind: ComfyWorkflow
        metadata:
          name: draw
        spec:
          service: comfyui
          models: [sdxl]
          graph:
            "1": {class_type: LoadImage, inputs: {image: a.png}}
        """
    )
    found = assemble(all_yaml=text)
    assert [(e.line, e.field) for e in found.errors] == [
        (9, "spec.url"),
        (16, "spec.service"),  # comfyui really is missing, so this one is reported
    ]


def test_reference_to_a_resource_declared_nowhere_is_reported() -> None:
    found = assemble(models_yaml=MODEL)
    assert errors_of(found) == [
        "models.yaml:9:13: spec.placement.nodes[0]: no NebulaNode named 'home-gpu'"
    ]


def test_references_resolve_across_files() -> None:
    found = assemble(models_yaml=MODEL, nodes_yaml=NODE)
    assert found.errors == []


def test_a_file_that_does_not_parse_hides_no_reference_but_its_own_error_shows() -> None:
    # Issue 11, point 9: one YAML syntax error in nodes.yaml came with a knock-on "no NebulaNode
    # named ..." for every reference into that file, burying the one real error.
    broken = NODE.replace(b"- {type: lan, address: 192.168.1.50}", b"- {type: lan, address: [")
    found = assemble(nodes_yaml=broken, models_yaml=MODEL)

    assert [(e.file, e.field) for e in found.errors] == [("nodes.yaml", "")]
    assert found.errors[0].line == 10


def test_with_a_file_unparsed_a_reference_that_is_found_is_still_checked() -> None:
    # What a found resource says of a reference does not depend on the unread file.
    comfy_model = MODEL.replace(b"provider: ollama", b"provider: comfyui").replace(
        b'model: "llama3.1:8b"',
        b"model: llama.safetensors\n  folder: checkpoints\n  url: https://example.com/llama.safetensors",
    )
    pipeline = yaml(
        """
        apiVersion: nebula.dev/v1alpha1
        kind: Pipeline
        metadata:
          name: daily
        spec:
          steps:
            - name: write
              llm: {model: llama, prompt: "Write"}
        """
    )
    found = assemble(nodes_yaml=b"kind: [\n", models_yaml=comfy_model, pipelines_yaml=pipeline)

    assert [(e.file, e.field) for e in found.errors] == [
        ("nodes.yaml", ""),
        ("pipelines.yaml", "spec.steps[0].llm.model"),
    ]
    assert "is a comfyui model, not ollama" in found.errors[1].message


# --- Namespaces --------------------------------------------------------------------------------


def test_namespace_defaults_to_default_and_cluster_scoped_kinds_have_none() -> None:
    found = assemble(nodes_yaml=NODE, models_yaml=MODEL)
    assert ResourceKey("NebulaModel", "default", "llama") in found.resources
    node = found.resources[ResourceKey("NebulaNode", None, "home-gpu")]
    assert node.metadata.namespace is None


def test_namespace_given_to_load_file_applies_only_where_none_is_written() -> None:
    explicit = MODEL.replace(b"name: llama", b"name: mistral\n  namespace: lab")
    loaded = manifests.load_file("m.yaml", MODEL + b"---\n" + explicit, namespace="studio")
    assert [r.key for r, _ in loaded.resources] == [
        ResourceKey("NebulaModel", "studio", "llama"),
        ResourceKey("NebulaModel", "lab", "mistral"),
    ]


def test_same_name_in_two_namespaces_is_no_duplicate_but_references_stay_in_theirs() -> None:
    other = manifests.load_file("lab.yaml", MODEL, namespace="lab")
    found = manifests.assemble(
        [manifests.load_file("n.yaml", NODE), manifests.load_file("m.yaml", MODEL), other]
    )
    assert found.errors == []
    assert found.count_by_kind() == {"NebulaNode": 1, "NebulaModel": 2}


# --- What is not an error ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"# only a comment\n",
        b"---\n",
        b"---\n---\n# nothing here either\n",
        MODEL + b"---\n",
        b"---\n" + MODEL + b"---\n...\n---\n",
    ],
    ids=["empty", "comment", "separator", "separators", "trailing-separator", "doc-end-marker"],
)
def test_empty_documents_and_trailing_separators_are_fine(text: bytes) -> None:
    loaded = manifests.load_file("m.yaml", text)
    assert loaded.errors == ()
    assert len(loaded.resources) == (1 if MODEL in text else 0)


def test_a_byte_order_mark_is_not_part_of_the_first_key() -> None:
    loaded = manifests.load_file("bom.yaml", b"\xef\xbb\xbf" + NODE)
    assert loaded.errors == () and len(loaded.resources) == 1


def test_windows_line_endings_load_and_keep_line_numbers() -> None:
    crlf = MODEL.replace(b"\n", b"\r\n").replace(b"ollama", b"llama")
    assert errors_of(manifests.load_file("m.yaml", crlf))[0].startswith("m.yaml:6:3: spec.provider")


# --- YAML 1.2, not YAML 1.1 --------------------------------------------------------------------


def test_yaml_1_2_scalars_keep_their_meaning() -> None:
    (document,) = parsing.parse(
        "a: on\nb: yes\nc: no\nd: y\ne: 017\nf: '0x1F'\ng: 0x1F\nh: 0o17\ni: 1_000\nj: 1.2.3\n"
        "k: true\nl: ~\nm: !!str 5\nn: 2024-01-01\n"
    )
    assert document.data == {
        "a": "on", "b": "yes", "c": "no", "d": "y",  # booleans only in YAML 1.1
        "e": 17,  # no octal from a leading zero
        "f": "0x1F", "g": 31, "h": 15,  # quoted stays text; 0x and 0o are numbers
        "i": "1_000", "j": "1.2.3",  # no digit separators; a version is text
        "k": True, "l": None, "m": "5",
        "n": "2024-01-01",  # no timestamps
    }  # fmt: skip


def test_yes_no_and_on_stay_text_where_the_model_expects_text() -> None:
    text = yaml(
        """
        apiVersion: nebula.dev/v1alpha1
        kind: NebulaService
        metadata:
          name: web
          labels: {public: yes}
        spec:
          image: nginx:1.27
          replicas: 017
          env:
            - {name: STRICT, value: on}
            - {name: VERBOSE, value: no}
            - {name: MASK, value: "0x1F"}
        """
    )
    loaded = manifests.load_file("web.yaml", text)
    assert loaded.errors == ()
    ((service, _),) = loaded.resources
    assert service.metadata.labels == {"public": "yes"}
    assert service.spec.replicas == 17
    assert [v.value for v in service.spec.env] == ["on", "no", "0x1F"]


def test_unquoted_hex_where_text_is_expected_is_an_error_not_a_silent_31() -> None:
    text = yaml(
        """
        apiVersion: nebula.dev/v1alpha1
        kind: NebulaService
        metadata: {name: web}
        spec:
          image: nginx:1.27
          env:
            - name: MASK
              value: 0x1F
        """
    )
    assert [e.field for e in manifests.load_file("web.yaml", text).errors] == ["spec.env[0].value"]


# --- Anchors and merge keys --------------------------------------------------------------------


def test_merge_keys_fill_in_and_keys_after_a_merge_are_not_duplicates() -> None:
    text = yaml(
        """
        apiVersion: nebula.dev/v1alpha1
        kind: NebulaService
        metadata:
          name: ollama
        spec:
          image: ollama/ollama:0.5.7
          ports: [{name: http, port: 11434}]
          healthCheck:
            http: &probe
              port: http
              path: /api/version
          domains:
            - <<: *probe
              host: ollama.example.com
              path: /
            - path: /v1
              <<: [*probe]
              host: api.example.com
        """
    )
    loaded = manifests.load_file("ollama.yaml", text)
    assert loaded.errors == ()
    ((service, _),) = loaded.resources
    domains = service.spec.domains
    assert [(d.host, d.port, d.path) for d in domains] == [
        ("ollama.example.com", "http", "/"),  # written after the merge: wins
        ("api.example.com", "http", "/v1"),  # written before the merge: wins too
    ]


def test_anchors_do_not_reach_into_the_next_document() -> None:
    text = MODEL.replace(b"spec:", b"spec: &spec") + b"---\n" + b"spec: *spec\n"
    loaded = manifests.load_file("m.yaml", text)
    assert errors_of(loaded) == ["m.yaml:11:7: alias *spec refers to no complete anchor"]


def test_alias_bomb_is_refused_without_expanding() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    # 10^12 strings once expanded; refused by counting, in well under a second of work.
    loaded = manifests.load_file("lol.yaml", "\n".join(lines).encode())
    assert [(e.line, e.column) for e in loaded.errors] == [(1, 1)]
    assert "through aliases" in loaded.errors[0].message


# --- Folders -----------------------------------------------------------------------------------


def test_hidden_folders_hidden_files_and_other_suffixes_are_skipped(tmp_path: pathlib.Path) -> None:
    garbage = b"{{{ not yaml at all"
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config.yaml").write_bytes(garbage)
    (tmp_path / ".hidden.yaml").write_bytes(garbage)
    (tmp_path / "README.md").write_bytes(garbage)
    (tmp_path / "notes.txt").write_bytes(garbage)
    (tmp_path / "kustomization.json").write_bytes(garbage)
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "home.yml").write_bytes(NODE)
    (tmp_path / "models.yaml").write_bytes(MODEL)
    assert manifests.manifest_files(tmp_path) == [
        tmp_path / "models.yaml",
        tmp_path / "nodes" / "home.yml",
    ]
    found = manifests.load_path(tmp_path, shown_as="manifests")
    assert found.errors == [] and found.files == 2
    assert str(found.origins[ResourceKey("NebulaNode", None, "home-gpu")]) == (
        "manifests/nodes/home.yml:1"
    )


def test_a_symlink_out_of_the_folder_is_refused_not_followed(tmp_path: pathlib.Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.yaml").write_bytes(NODE)
    root = tmp_path / "manifests"
    root.mkdir()
    (root / "models.yaml").write_bytes(MODEL.replace(b"nodes: [home-gpu]", b"nodes: []"))
    os.symlink(tmp_path / "elsewhere" / "secret.yaml", root / "linked.yaml")
    found = manifests.load_path(root, shown_as="m")
    assert errors_of(found) == [
        "m/linked.yaml:1:1: a link out of the manifests folder is not followed"
    ]
    assert list(found.resources) == [ResourceKey("NebulaModel", "default", "llama")]


def test_a_linked_folder_is_reported_rather_than_silently_left_out(tmp_path: pathlib.Path) -> None:
    # Regression: rglob did not enter linked folders and said nothing, so what they declared
    # vanished from the desired set (and a sync would have pruned it).
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "node.yaml").write_bytes(NODE)
    root = tmp_path / "manifests"
    root.mkdir()
    os.symlink(tmp_path / "elsewhere", root / "nodes")
    found = manifests.load_path(root, shown_as="m")
    assert errors_of(found) == [
        "m/nodes:1:1: a linked folder is not followed: move its manifests into the folder"
    ]


def test_a_single_file_can_be_loaded_as_a_path(tmp_path: pathlib.Path) -> None:
    (tmp_path / "node.yaml").write_bytes(NODE)
    found = manifests.load_path(tmp_path / "node.yaml", shown_as="node.yaml")
    assert found.errors == []
    assert found.origins[ResourceKey("NebulaNode", None, "home-gpu")].file == "node.yaml"


def test_errors_are_sorted_by_file_then_line(tmp_path: pathlib.Path) -> None:
    bad_role = NODE.replace(b"role: ai", b"role: gpu")
    (tmp_path / "b.yaml").write_bytes(bad_role)
    # a.yaml sorts first although it is written second, and has two errors, lines 4 and 16.
    other_node = bad_role.replace(b"home-gpu", b"other-gpu")
    (tmp_path / "a.yaml").write_bytes(
        MODEL.replace(b"name: llama", b"name: Llama") + b"---\n" + other_node
    )
    (tmp_path / "c.yaml").write_bytes(b"key: [unclosed\n")
    found = manifests.load_path(tmp_path, shown_as="m")
    assert [(e.file, e.line) for e in found.errors] == [
        ("m/a.yaml", 4),
        ("m/a.yaml", 16),
        ("m/b.yaml", 6),
        ("m/c.yaml", 2),
    ]


def test_count_by_kind_follows_the_apply_order_and_omits_absent_kinds() -> None:
    pipeline = yaml(
        """
        apiVersion: nebula.dev/v1alpha1
        kind: Pipeline
        metadata: {name: p}
        spec:
          steps: [{name: ok, approval: {message: go}}]
        """
    )
    found = assemble(p_yaml=pipeline, m_yaml=MODEL, n_yaml=NODE)
    assert found.errors == []
    assert list(found.count_by_kind().items()) == [
        ("NebulaNode", 1),
        ("NebulaModel", 1),
        ("Pipeline", 1),
    ]
    assert manifests.assemble([]).count_by_kind() == {}


def test_load_file_is_a_pure_function_of_name_and_bytes() -> None:
    # The sync caches loaded files by blob id; the same input must give equal output.
    bad = MODEL.replace(b"ollama", b"olama")
    assert manifests.load_file("m.yaml", bad) == manifests.load_file("m.yaml", bad)
