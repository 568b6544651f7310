"""Generates a large, valid homelab as manifests on disk, for the benchmarks.

Every resource is realistic in size and shape (the example homelab's kinds, with references
between them that resolve), spread over files of ``per_file`` documents.
"""

from __future__ import annotations

import pathlib

NODE = """apiVersion: nebula.dev/v1alpha1
kind: NebulaNode
metadata:
  name: node-{i}
  labels: {{site: home, rack: r{r}}}
spec:
  role: ai
  runtime: k3s
  description: GPU worker {i}
  addresses:
    - type: tailscale
      address: node-{i}.tail0123.ts.net
    - type: lan
      address: 10.0.{r}.{h}
  hardware:
    arch: amd64
    minMemory: 32Gi
    gpu: {{vendor: nvidia, model: RTX 3090, minVram: 24Gi}}
  labels:
    gpu: rtx-3090
"""
SERVICE = """apiVersion: nebula.dev/v1alpha1
kind: NebulaService
metadata:
  name: svc-{i}
  namespace: homelab
spec:
  image: ghcr.io/acme/app-{i}:1.{r}.0
  replicas: 1
  ports:
    - {{name: http, port: 8080}}
  env:
    - {{name: LOG_LEVEL, value: info}}
    - name: API_TOKEN
      secretRef: {{name: app-{i}, key: token}}
  placement:
    node: node-{n}
  healthCheck:
    http: {{path: /healthz, port: http}}
    interval: 30s
  domains:
    - host: app-{i}.example.com
"""
MODEL = """apiVersion: nebula.dev/v1alpha1
kind: NebulaModel
metadata:
  name: model-{i}
  namespace: homelab
spec:
  provider: ollama
  model: "llama3.1:8b-q{r}"
  size: 4.7Gi
  placement:
    nodes: [node-{n}]
    minVram: 8Gi
  state: present
"""
WORKFLOW = """apiVersion: nebula.dev/v1alpha1
kind: ComfyWorkflow
metadata:
  name: wf-{i}
  namespace: homelab
spec:
  service: svc-{i}
  parameters:
    - {{name: prompt, node: "6", input: text, type: string, default: a cat}}
    - {{name: seed, node: "3", input: seed, type: integer, default: 42}}
  graph:
    "3":
      class_type: KSampler
      inputs: {{seed: 42, steps: 20, cfg: 7, model: ["4", 0], positive: ["6", 0]}}
    "4": {{class_type: CheckpointLoaderSimple, inputs: {{ckpt_name: sdxl.safetensors}}}}
    "6": {{class_type: CLIPTextEncode, inputs: {{text: a cat, clip: ["4", 1]}}}}
"""
PIPELINE = """apiVersion: nebula.dev/v1alpha1
kind: Pipeline
metadata:
  name: pl-{i}
  namespace: homelab
spec:
  schedule: "0 9 * * 1"
  steps:
    - name: script
      llm: {{model: model-{i}, prompt: "Write about {{{{ params.topic }}}}"}}
    - name: image
      needs: [script]
      comfyui: {{workflow: wf-{i}, parameters: {{prompt: "{{{{ steps.script.output }}}}"}}}}
  parameters:
    - {{name: topic, default: homelabs}}
"""
# One "unit" is five resources that refer to each other, plus one node per ten units.
TEMPLATES = (SERVICE, MODEL, WORKFLOW, PIPELINE)


def generate(root: pathlib.Path, count: int, *, per_file: int = 100) -> int:
    """Writes about ``count`` resources under ``root``; returns how many it wrote."""
    documents: list[str] = []
    units = max(1, count // 4)
    nodes = max(1, units // 40)
    for i in range(nodes):
        documents.append(NODE.format(i=i, r=i % 250, h=i % 250 + 1))
    for i in range(units - (nodes + 3) // 4):
        for template in TEMPLATES:
            documents.append(template.format(i=i, r=i % 10, n=i % nodes))
    root.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(documents), per_file):
        chunk = documents[start : start + per_file]
        (root / f"part-{start // per_file:04d}.yaml").write_text("---\n".join(chunk))
    return len(documents)
