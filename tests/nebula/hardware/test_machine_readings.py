"""The machine's own records (``/proc``, ``/etc/os-release``, mounts, interfaces) read right."""

from __future__ import annotations

import socket
from typing import NamedTuple

import psutil  # type: ignore[import-untyped]  # psutil ships no type information
import pytest

from nebula.hardware import quantities, system
from tests.nebula.hardware.replay import fixture


class Mount(NamedTuple):
    device: str
    mountpoint: str
    fstype: str
    opts: str = "rw"


class Address(NamedTuple):
    family: int
    address: str


def test_cpu_model_comes_from_the_first_model_name_line() -> None:
    assert system.parse_cpu_model(fixture("proc-cpuinfo.this-machine.txt")) == "AMD EPYC"


def test_cpuinfo_that_names_no_cpu_gives_an_empty_model() -> None:
    assert system.parse_cpu_model("processor\t: 0\nBogoMIPS\t: 108.00\n") == ""


def test_raspberry_pi_cpuinfo_names_the_board_when_it_names_no_cpu() -> None:
    # arm64 kernels print no "model name"; the Pi's firmware adds a "Model" line at the end.
    text = "processor\t: 0\nCPU part\t: 0xd0b\n\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"

    assert system.parse_cpu_model(text) == "Raspberry Pi 5 Model B Rev 1.0"


def test_memory_total_is_meminfo_memtotal_in_bytes() -> None:
    total = system.parse_mem_total(fixture("proc-meminfo.this-machine.txt"))

    assert total == 24684096 * 1024
    assert quantities.from_bytes(total) == "24684096Ki"


def test_meminfo_without_memtotal_is_refused() -> None:
    with pytest.raises(ValueError, match="no MemTotal"):
        system.parse_mem_total("MemFree:        24080924 kB\n")


def test_os_name_is_the_pretty_name_of_os_release() -> None:
    text = fixture("os-release.this-machine.txt")

    assert system.parse_os_release(text) == "Debian GNU/Linux 12 (bookworm)"


def test_os_release_without_pretty_name_joins_name_and_version() -> None:
    assert system.parse_os_release('NAME="Alpine Linux"\nVERSION="3.20.3"\n') == (
        "Alpine Linux 3.20.3"
    )


@pytest.mark.parametrize(
    ("machine", "arch"),
    [
        ("x86_64", "amd64"),  # Linux
        ("AMD64", "amd64"),  # Windows
        ("aarch64", "arm64"),  # Linux on ARM
        ("ARM64", "arm64"),  # Windows on ARM
        ("arm64", "arm64"),  # macOS
        ("armv7l", "arm"),  # 32-bit Raspberry Pi OS
        ("i686", "386"),
        ("riscv64", "riscv64"),
    ],
)
def test_architecture_is_named_as_kubernetes_names_it(machine: str, arch: str) -> None:
    assert system.normalize_arch(machine) == arch


@pytest.mark.parametrize(
    ("release", "version", "edition", "name"),
    [
        ("10", "10.0.22631", "Professional", "Windows 11 Professional"),
        ("11", "10.0.26100", "Core", "Windows 11 Core"),
        ("10", "10.0.19045", "Professional", "Windows 10 Professional"),
        ("2022Server", "10.0.20348", "ServerStandard", "Windows 2022Server ServerStandard"),
    ],
)
def test_windows_11_is_named_11_even_where_python_says_10(
    release: str, version: str, edition: str, name: str
) -> None:
    assert system.windows_name(release, version, edition) == name


def test_tailscale_address_is_the_one_in_100_64_slash_10() -> None:
    found = ["192.168.1.20", "fd7a:115c:a1e0::53", "100.101.102.103", "10.0.0.5"]

    assert system.tailscale_address(found) == "100.101.102.103"


def test_tailscale_ipv6_is_used_when_the_machine_has_no_tailscale_ipv4() -> None:
    assert system.tailscale_address(["192.168.1.20", "fd7a:115c:a1e0::53"]) == (
        "fd7a:115c:a1e0::53"
    )


def test_addresses_next_to_the_tailscale_range_are_not_tailscale() -> None:
    assert system.tailscale_address(["100.63.255.255", "100.128.0.1", "fd00::2"]) is None


def test_this_machines_addresses_leave_out_loopback_and_link_local() -> None:
    found = system.usable_addresses(psutil.net_if_addrs())

    assert "127.0.0.1" not in found and "::1" not in found
    assert not [address for address in found if address.startswith("fe80:")]
    assert found == system.read_addresses()


def test_addresses_of_interfaces_that_are_down_are_left_out() -> None:
    interfaces = {
        "lo": [Address(socket.AF_INET, "127.0.0.1")],
        "eth0": [
            Address(socket.AF_INET6, "fe80::fc:ff:fe00:1%eth0"),
            Address(socket.AF_INET6, "fd00::2"),
            Address(socket.AF_INET, "192.168.1.20"),
        ],
        "tailscale0": [Address(socket.AF_INET, "100.101.102.103")],
        "wlan0": [Address(socket.AF_INET, "192.168.1.21")],
    }
    up = {"lo": True, "eth0": True, "tailscale0": True, "wlan0": False}

    assert system.usable_addresses(interfaces, up) == [
        "192.168.1.20",
        "fd00::2",
        "100.101.102.103",
    ]


def test_this_machines_mounts_keep_the_root_and_drop_kernel_file_systems() -> None:
    mounts = system.real_mounts(psutil.disk_partitions(all=True), system_root="/")

    assert mounts[0].mountpoint == "/"
    assert not {mount.fstype for mount in mounts} & system.PSEUDO_FILESYSTEMS
    assert len({mount.device for mount in mounts}) == len(mounts)


def test_container_mounts_keep_the_overlay_root_real_disks_and_shares_once_each() -> None:
    # What an agent sees inside a container on a home server, plus a snap and a DVD drive.
    partitions = [
        Mount("overlay", "/", "overlay"),
        Mount("proc", "/proc", "proc"),
        Mount("tmpfs", "/dev", "tmpfs"),
        Mount("/dev/sda2", "/var/lib/nebula", "ext4"),
        Mount("/dev/sda2", "/var/lib/nebula/state", "ext4"),
        Mount("/dev/sdb1", "/mnt/models", "xfs"),
        Mount("/dev/sdb1", "/mnt/models/cache", "xfs"),
        Mount("/dev/loop3", "/snap/core22/1380", "squashfs", "ro"),
        Mount("nas:/export/media", "/mnt/media", "nfs4"),
        Mount("overlay", "/var/lib/docker/overlay2/abc/merged", "overlay"),
        Mount("D:\\", "D:\\", "", "cdrom"),
    ]

    kept = system.real_mounts(partitions, system_root="/")

    assert [mount.mountpoint for mount in kept] == [
        "/",
        "/mnt/media",
        "/mnt/models",
        "/var/lib/nebula",
    ]


def test_a_windows_machine_keeps_its_system_drive_first() -> None:
    partitions = [
        Mount("D:\\", "D:\\", "NTFS", "rw,fixed"),
        Mount("C:\\", "C:\\", "NTFS", "rw,fixed"),
        Mount("E:\\", "E:\\", "", "cdrom"),
    ]

    kept = system.real_mounts(partitions, system_root="C:\\")

    assert [mount.mountpoint for mount in kept] == ["C:\\", "D:\\"]


@pytest.mark.parametrize(
    ("count", "quantity"),
    [
        (0, "0"),
        (1000, "1000"),
        (1024, "1Ki"),
        (1536, "1536"),
        (24684096 * 1024, "24684096Ki"),
        (24576 * quantities.MIB, "24Gi"),
        (116 * quantities.MIB, "116Mi"),
        (4 * 1024**4, "4Ti"),
    ],
)
def test_sizes_are_exact_byte_counts_in_the_largest_binary_unit_that_divides(
    count: int, quantity: str
) -> None:
    assert quantities.from_bytes(count) == quantity
    assert quantities.to_bytes(quantity) == count
