"""The hardware probe of the node agent: the core's only code that looks at the machine.

The agent calls ``probe`` on each heartbeat and reports its ``Hardware``; the NebulaNode
controller uses ``vram_tier``, ``gpu_summary`` and ``vram_summary`` for status and labels, and
``meets`` to compare reported sizes with declared ones; ``human`` is how every size is shown.
Runs on Linux and Windows (psutil where it can, ``/proc`` on Linux where it must). Contract:
it reads and never changes the machine (no settings, no installs, no privileges); it never
raises for what it finds (a failed probe becomes a ``Problem``, and absence, such as no GPU, is
a fact); every external command goes through a ``CommandRunner``, so tests replay real outputs.

Modules: ``probing`` (the orchestration), ``system`` (CPU, memory, disks, OS, addresses),
``nvidia`` and ``amd`` (GPU tools' outputs), ``endpoints`` (Docker, Ollama, ComfyUI),
``summary`` (one-line views), ``quantities`` (byte counts as quantities), ``commands`` (the
runner seam).
"""

from nebula.hardware.commands import (
    CommandNotFound,
    CommandResult,
    CommandRunner,
    CommandTimedOut,
    ProbeFailed,
    run_subprocess,
)
from nebula.hardware.endpoints import Endpoints
from nebula.hardware.probing import DEFAULT_COMMAND_TIMEOUT, Probe, Problem, probe
from nebula.hardware.quantities import human, meets
from nebula.hardware.summary import gpu_summary, short_model, vram_summary, vram_tier
from nebula.hardware.system import tailscale_address

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT",
    "CommandNotFound",
    "CommandResult",
    "CommandRunner",
    "CommandTimedOut",
    "Endpoints",
    "Probe",
    "ProbeFailed",
    "Problem",
    "gpu_summary",
    "human",
    "meets",
    "probe",
    "run_subprocess",
    "short_model",
    "tailscale_address",
    "vram_summary",
    "vram_tier",
]
