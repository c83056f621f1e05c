#!/usr/bin/env bash
# A Docker base image made from Debian packages, for a host that reaches Debian's mirror but no
# image registry (docs/operations.md, "Container image"): debootstrap a minimal Debian with
# Python 3 and venv, then `docker import` it. The Dockerfile then builds on it with
#   docker build --build-arg BASE_IMAGE=litestream-base:bookworm ...
#
#   bash deploy/docker/debian-base.sh [TAG]     (root, or sudo; needs debootstrap and docker)
#
# SUITE (bookworm: Python 3.11) and MIRROR (deb.debian.org) may be overridden.
set -euo pipefail
TAG="${1:-litestream-base:bookworm}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
ROOTFS="$(mktemp -d /var/tmp/litestream-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
# minbase: essential packages and apt only. python3-venv brings ensurepip for the build stage;
# ca-certificates lets pip reach PyPI. The runtime stage needs python3 and useradd (passwd).
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
    "$SUITE" "$ROOTFS" "$MIRROR"
# What a container never needs: package lists and caches, docs, man pages, other locales.
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/usr/share/doc/* \
    "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/var/log/*
find "$ROOTFS"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'en*' -exec rm -rf {} +
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$TAG"
docker image ls "$TAG"
