#!/usr/bin/env bash
# Install what the WebGPU tests need on Debian 12 (idempotent, as root or through sudo):
#   libegl1 libegl-mesa0 libgl1-mesa-dri libegl-dev  Mesa llvmpipe over EGL for npm `webgpu` (Dawn,
#                                                    backend=opengles; Dawn loads the unversioned libEGL.so)
#   chromium                                         headless Chromium (SwiftShader WebGPU) for Vitest browser mode
set -euo pipefail
PACKAGES=(libegl1 libegl-mesa0 libgl1-mesa-dri libegl-dev chromium)
log() { printf '[install-test-deps] %s\n' "$*"; }
command -v dpkg-query >/dev/null 2>&1 || { log "dpkg-query not found: Debian only; install the equivalents of: ${PACKAGES[*]}"; exit 1; }
missing=()
for pkg in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)" = installed ]; then
    log "present: $pkg $(dpkg-query -W -f='${Version}' "$pkg")"
  else
    log "missing: $pkg"
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=()
  [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
log "done"
