"""The machine itself: CPU, memory, disks, operating system, architecture, network addresses.

Called by ``probing``. The ``parse_*`` and filtering functions are pure (they take file text or
psutil's records), so tests feed them real ``/proc`` files; the ``read_*`` functions do the
reading: on Linux from ``/proc`` and ``/etc`` under a given root, elsewhere through psutil and
``platform``, so the same code runs on Linux and Windows. Nothing here writes, mounts, or asks
for privileges, and nothing is hard-coded about the machine.

Disks: every mounted file system that holds data, found with ``psutil.disk_partitions(all=True)``
and filtered here by type, so the rule is visible and the same everywhere. Skipped: kernel and
memory file systems (``proc``, ``sysfs``, ``tmpfs``, ``devtmpfs``, ``cgroup``...), ``squashfs``
(snap images, always full), ``overlay`` (container layers: the host disk appears under its own
mount), drives with no medium (an empty DVD drive on Windows), every further mount of a device
already listed (bind mounts), and mounts of single files (a container's ``/etc/hosts`` is one
file bind-mounted from the host's disk). The root file system is always kept, whatever its
type, so an agent inside a container still reports the disk it lives on. Network shares (NFS,
SMB) are kept: a NAS mount is where a homelab keeps its models.
"""

from __future__ import annotations

import ipaddress
import os
import pathlib
import platform
import shlex
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import psutil

from nebula.hardware import quantities
from nebula.resources.nebula_node import CpuInfo, DiskInfo

__all__ = [
    "PSEUDO_FILESYSTEMS",
    "TAILSCALE_IPV4",
    "TAILSCALE_IPV6",
    "InterfaceAddress",
    "Partition",
    "normalize_arch",
    "parse_cpu_model",
    "parse_mem_total",
    "parse_os_release",
    "read_addresses",
    "read_cpu",
    "read_disks",
    "read_memory",
    "read_os",
    "real_mounts",
    "tailscale_address",
    "usable_addresses",
    "windows_name",
]

PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devfs",
        "devpts", "devtmpfs", "efivarfs", "fuse.gvfsd-fuse", "fuse.lxcfs", "fuse.portal",
        "fusectl", "hugetlbfs", "mqueue", "nsfs", "nfsd", "overlay", "proc", "pstore", "ramfs",
        "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs",
    }
)  # fmt: skip
"""File system types that hold no user data (or only a container's layers): never a disk."""

TAILSCALE_IPV4 = ipaddress.ip_network("100.64.0.0/10")
"""The carrier-grade NAT range Tailscale hands its 100.x addresses out of."""

TAILSCALE_IPV6 = ipaddress.ip_network("fd7a:115c:a1e0::/48")
"""Tailscale's own IPv6 unique-local prefix."""


class Partition(Protocol):
    """One mount as psutil.disk_partitions describes it."""

    @property
    def device(self) -> str: ...
    @property
    def mountpoint(self) -> str: ...
    @property
    def fstype(self) -> str: ...
    @property
    def opts(self) -> str: ...


class InterfaceAddress(Protocol):
    """One address of a network interface as psutil.net_if_addrs describes it."""

    @property
    def family(self) -> int: ...
    @property
    def address(self) -> str: ...


def _key_values(text: str, separator: str) -> Iterable[tuple[str, str]]:
    for line in text.splitlines():
        key, found, value = line.partition(separator)
        if found:
            yield key.strip(), value.strip()


def parse_cpu_model(cpuinfo: str) -> str:
    """The CPU's name in ``/proc/cpuinfo`` text; "" when the file does not name it.

    x86 names it in ``model name``; older ARM kernels in ``Processor``; a Raspberry Pi only
    names the board (``Model``); POWER uses ``cpu``; RISC-V ``uarch``; else ``Hardware``.
    """
    found = dict(reversed(list(_key_values(cpuinfo, ":"))))  # the first occurrence wins
    for key in ("model name", "Processor", "Model", "cpu", "uarch", "Hardware"):
        if found.get(key):
            return found[key]
    return ""


def parse_mem_total(meminfo: str) -> int:
    """Total RAM in bytes from ``/proc/meminfo`` text (its ``MemTotal`` line, in KiB).

    Raises ValueError when the text has no readable MemTotal line.
    """
    for key, value in _key_values(meminfo, ":"):
        if key == "MemTotal":
            number, _, unit = value.partition(" ")
            if unit.strip() not in ("kB", ""):
                raise ValueError(f"MemTotal in unexpected unit {unit!r}")
            return int(number) * (1024 if unit.strip() else 1)
    raise ValueError("no MemTotal line in /proc/meminfo")


def parse_os_release(text: str) -> str:
    """The system's name from ``/etc/os-release`` text: PRETTY_NAME, else NAME and VERSION."""
    values = {}
    for key, value in _key_values(text, "="):
        # Values are shell words: quoted, possibly with escapes.
        try:
            words = shlex.split(value)
        # An unbalanced quote: take the value as written, minus its quotes.
        except ValueError:
            words = [value.strip("\"'")]
        values[key] = " ".join(words)
    if values.get("PRETTY_NAME"):
        return values["PRETTY_NAME"]
    return " ".join(part for part in (values.get("NAME"), values.get("VERSION")) if part)


_ARCHES = {
    "x86_64": "amd64", "amd64": "amd64", "x64": "amd64", "em64t": "amd64",
    "aarch64": "arm64", "arm64": "arm64", "armv8l": "arm64", "armv8b": "arm64",
    "i386": "386", "i486": "386", "i586": "386", "i686": "386", "x86": "386",
}  # fmt: skip


def normalize_arch(machine: str) -> str:
    """``platform.machine()`` in Go's and Kubernetes' words: amd64, arm64, 386, arm, or as is."""
    lowered = machine.strip().lower()
    if lowered in _ARCHES:
        return _ARCHES[lowered]
    if lowered.startswith("armv"):
        return "arm"
    return lowered


def windows_name(release: str, version: str, edition: str | None) -> str:
    """The Windows name from ``platform``'s pieces, e.g. "Windows 11 Professional".

    Python before 3.12 reports ``release`` "10" on Windows 11; build 22000 and later is 11.
    """
    build = version.split(".")[2] if version.count(".") >= 2 else ""
    if release == "10" and build.isdigit() and int(build) >= 22000:
        release = "11"
    return " ".join(part for part in ("Windows", release, edition) if part)


def tailscale_address(addresses: Iterable[str]) -> str | None:
    """The Tailscale address among ``addresses``: a 100.64.0.0/10 IPv4 first, else its IPv6.

    None when the machine is not on a tailnet (or Tailscale is down).
    """
    ipv6 = None
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        # Not an IP address (a hostname in the list): it cannot be in Tailscale's ranges.
        except ValueError:
            continue
        if address.version == 4 and address in TAILSCALE_IPV4:
            return text
        if address.version == 6 and address in TAILSCALE_IPV6 and ipv6 is None:
            ipv6 = text
    return ipv6


def usable_addresses(
    interfaces: Mapping[str, Sequence[InterfaceAddress]], up: Mapping[str, bool] | None = None
) -> list[str]:
    """The IPv4 and IPv6 addresses others could reach this machine at, in interface order.

    Skips interfaces known to be down, and loopback, link-local, multicast and unspecified
    addresses (none of them reaches the machine from elsewhere). IPv4 before IPv6 per interface.
    """
    found: list[str] = []
    for name, entries in interfaces.items():
        if up is not None and not up.get(name, True):
            continue
        for family in (socket.AF_INET, socket.AF_INET6):
            for entry in entries:
                if entry.family != family:
                    continue
                text = entry.address.split("%")[0]  # fe80::1%eth0 carries its scope
                try:
                    address = ipaddress.ip_address(text)
                # An address form this Python cannot read: nobody could dial it either.
                except ValueError:
                    continue
                unusable = address.is_loopback or address.is_link_local
                if unusable or address.is_multicast or address.is_unspecified:
                    continue
                if text not in found:
                    found.append(text)
    return found


def _system_root() -> str:
    if sys.platform == "win32":
        return os.environ.get("SYSTEMDRIVE", "C:") + "\\"
    return os.path.abspath(os.sep)


def real_mounts(partitions: Iterable[Partition], *, system_root: str) -> list[Partition]:
    """The mounts that hold data (see the module docstring for the rule), one per device.

    The root comes first, then the others by mount point.
    """

    def is_root(part: Partition) -> bool:
        return os.path.normcase(part.mountpoint) == os.path.normcase(system_root)

    def rank(part: Partition) -> tuple[bool, int]:
        return not is_root(part), len(part.mountpoint)

    kept: dict[str, Partition] = {}
    for part in partitions:
        pseudo = part.fstype in PSEUDO_FILESYSTEMS or not part.fstype
        if (pseudo or "cdrom" in part.opts.split(",")) and not is_root(part):
            continue
        # Bind mounts repeat a device: keep its root mount, else its shortest mount point.
        previous = kept.get(part.device)
        if previous is None or rank(part) < rank(previous):
            kept[part.device] = part
    return sorted(kept.values(), key=lambda part: (not is_root(part), part.mountpoint))


def _not_a_file(mountpoint: str) -> bool:
    # A container's /etc/hosts, /etc/hostname and /etc/resolv.conf are files bind-mounted from
    # the host's disk: the disk is reported through the root, the files are not disks.
    return not os.path.isfile(mountpoint)


def read_disks() -> tuple[list[DiskInfo], list[str]]:
    """This machine's disks with size and free space, and one "mount: why" per unreadable one.

    Free space is what an unprivileged process may still use. May block on a hung network
    mount (the probe bounds it with its deadline).
    """
    disks, failures = [], []
    root = _system_root()
    partitions = [part for part in psutil.disk_partitions(all=True) if _not_a_file(part.mountpoint)]
    for part in real_mounts(partitions, system_root=root):
        mount = str(part.mountpoint)
        try:
            usage = psutil.disk_usage(mount)
        # Permission denied, a vanished mount, a network share that refused: say which.
        except OSError as error:
            failures.append(f"{mount}: {error.strerror or error}")
            continue
        total, free = int(usage.total), int(usage.free)
        if total <= 0:
            continue  # autofs placeholders and the like: nothing mounted there yet
        disks.append(
            DiskInfo(
                mount=mount, total=quantities.from_bytes(total), free=quantities.from_bytes(free)
            )
        )
    return disks, failures


def _read_text(root: pathlib.Path, *names: str) -> str | None:
    for name in names:
        path = root / name
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        # Not Linux, or a minimal container without the file: try the next source.
        except FileNotFoundError:
            continue
    return None


def read_cpu(root: pathlib.Path) -> CpuInfo:
    """The CPU's name (``/proc/cpuinfo`` under ``root`` on Linux) and its core counts."""
    cpuinfo = _read_text(root, "proc/cpuinfo")
    model = parse_cpu_model(cpuinfo) if cpuinfo is not None else ""
    if not model:
        model = platform.processor() or platform.machine()
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 0
    physical = psutil.cpu_count(logical=False)
    return CpuInfo(
        model=model, cores=int(logical), physical_cores=None if physical is None else int(physical)
    )


def read_memory(root: pathlib.Path) -> str:
    """Total RAM as a quantity: ``/proc/meminfo``'s MemTotal on Linux, psutil elsewhere."""
    meminfo = _read_text(root, "proc/meminfo")
    if meminfo is not None:
        return quantities.from_bytes(parse_mem_total(meminfo))
    return quantities.from_bytes(int(psutil.virtual_memory().total))


def read_os(root: pathlib.Path) -> tuple[str, str, str]:
    """The operating system's name, the kernel version and the normalised architecture."""
    arch = normalize_arch(platform.machine())
    if sys.platform == "win32":
        version = platform.version()
        return windows_name(platform.release(), version, platform.win32_edition()), version, arch
    if sys.platform == "darwin":
        return f"macOS {platform.mac_ver()[0]}".strip(), platform.release(), arch
    os_release = _read_text(root, "etc/os-release", "usr/lib/os-release")
    name = parse_os_release(os_release) if os_release is not None else ""
    return name or f"{platform.system()} {platform.release()}", platform.release(), arch


def read_addresses() -> list[str]:
    """The addresses of this machine's interfaces that are up (see ``usable_addresses``)."""
    up = {name: bool(stats.isup) for name, stats in psutil.net_if_stats().items()}
    return usable_addresses(psutil.net_if_addrs(), up)
