#!/usr/bin/env bash
# debian:bookworm-slim without a registry: debootstrap a minbase bookworm and import it.
set -euo pipefail
source "$(cd "$(dirname "$0")/.." && pwd)/lib.sh"
tag=${1:-debian:bookworm-slim}
if docker image inspect "$tag" >/dev/null 2>&1; then exit 0; fi
root=$(mktemp -d "$CACHE/e2e/rootfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
say "debootstrap --variant=minbase bookworm (about 3 minutes)"
debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$LOGS/debootstrap.log" 2>&1 \
  || { tail -20 "$LOGS/debootstrap.log" >&2; die "debootstrap failed (log: $LOGS/debootstrap.log)"; }
# As in the official slim image: no apt caches, and apt keeps none.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - "$tag" >/dev/null
say "imported $tag"
