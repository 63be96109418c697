"""Debian 13's own Mosquitto (2.0.21, which loses a disconnected session's queue with
per_listener_settings true, eclipse-mosquitto/mosquitto#2618), for running the mosquitto
role's config on it here. Needs root and debootstrap.

The root file system (debootstrap minbase with mosquitto, about 40 s and 220 MB) is made
once and cached under URBANPULSE_ROOTFS_CACHE (default /var/cache/urbanpulse-tests), as the
booted-node images are (tests/ansible/booted_node.py). Mosquitto runs from it through the
image's own dynamic loader and libraries, not chrooted: it reads the test's files where
they are, and the cached image is never written. Only /etc of this machine (passwd,
openssl.cnf) is seen by it instead of the image's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from tests.ansible.booted_node import cache_dir, cached, debootstrap

__all__ = ["cache_dir", "cached_rootfs", "missing_requirements", "mosquitto_argv"]

SUITE = "trixie"
PACKAGES = ("mosquitto",)
# Changing how the image is made: bump this, and the next run builds a new one.
RECIPE = 1
PREFIX = "mosquitto-trixie"


def missing_requirements() -> list[str]:
    missing = [] if shutil.which("debootstrap") else ["debootstrap"]
    if os.geteuid() != 0:
        missing.append("root")
    return missing


def cached_rootfs(cache: Path) -> Path:
    """The image, made by debootstrap on the first call (older recipes' are removed then)."""
    key = hashlib.sha256(repr((SUITE, PACKAGES, RECIPE)).encode()).hexdigest()[:12]
    return cached(cache, f"{PREFIX}-{key}", PREFIX, lambda root: debootstrap(root, SUITE, PACKAGES))


def mosquitto_argv(root: Path) -> list[str]:
    """The image's mosquitto, started with the image's loader and libraries."""
    libc = sorted(root.glob("usr/lib/*-linux-gnu*/libc.so.6"))
    if not libc:
        raise AssertionError(f"no libc.so.6 under {root}/usr/lib/<triplet>")
    libs = libc[0].parent
    loaders = sorted(libs.glob("ld-linux*.so.*"))
    if not loaders:
        raise AssertionError(f"no dynamic loader in {libs}")
    return [str(loaders[0]), "--library-path", str(libs), str(root / "usr" / "sbin" / "mosquitto")]
