#!/usr/bin/env bash
# A minimal Debian image made without a container registry: debootstrap from the mirror that
# apt already uses on this host, imported with `docker import`. Nothing is done when TAG exists.
#
#   images/debian-base.sh TAG [PACKAGE,PACKAGE...]
#
# DEBIAN_SUITE (env): the release (default bookworm). DEBIAN_MIRROR (env): a mirror to use
# instead of apt's.
set -euo pipefail
tag=${1:?usage: images/debian-base.sh TAG [PACKAGE,PACKAGE...]}
packages=ca-certificates${2:+,$2}
suite=${DEBIAN_SUITE:-bookworm}
if docker image inspect "$tag" >/dev/null 2>&1; then exit 0; fi

command -v debootstrap >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; }
mirror=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
         | grep -oE 'https?://[^ ]+' | head -n1 || true)
mirror=${DEBIAN_MIRROR:-$mirror}
[ -n "$mirror" ] || { echo "images: no Debian mirror in apt's sources: set DEBIAN_MIRROR" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "images: debootstrap $suite ($packages) from $mirror"
debootstrap --variant=minbase --include="$packages" "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
tar -C "$work/rootfs" -c . | docker import - "$tag" >/dev/null
echo "images: imported $tag"
