#!/usr/bin/env bash
# Install the Debian toolchain that builds the slim-kernels WebAssembly binaries.
#
#   rustc-web, cargo-web, rust-web-src  Rust 1.96 from bookworm-security (rust-web-src is needed by
#                                        -Zbuild-std, because Debian ships no wasm32 std)
#   lld-22                               wasm-ld-22, the linker
#   wabt                                 wasm-objdump, used to prove SIMD opcodes are present
#
# Idempotent: packages are installed only when dpkg-query says they are missing, and `apt-get update`
# runs only when something must be installed. Works as root (CI) or through sudo.
# Note: bookworm/main carries rustc-web 1.85; the 1.96 build comes from bookworm-security, which must be
# in the apt sources (it is on stock Debian 12 images).
set -euo pipefail

PACKAGES=(rustc-web cargo-web rust-web-src lld-22 wabt)

log() { printf '[install-toolchain] %s\n' "$*"; }

installed_version() {
  # Prints the installed version, or nothing when the package is not (fully) installed.
  local status
  status="$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)"
  if [ "$status" = "installed" ]; then
    dpkg-query -W -f='${Version}' "$1"
  fi
}

if ! command -v dpkg-query >/dev/null 2>&1; then
  log "error: dpkg-query not found; this script supports Debian 12 (bookworm) only" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  version="$(installed_version "$pkg")"
  if [ -n "$version" ]; then
    log "present: $pkg $version"
  else
    log "missing: $pkg"
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  log "nothing to install"
else
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    log "error: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  log "running: apt-get update"
  "${SUDO[@]}" apt-get update -q
  log "running: apt-get install -y --no-install-recommends ${missing[*]}"
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  for pkg in "${missing[@]}"; do
    version="$(installed_version "$pkg")"
    if [ -z "$version" ]; then
      log "error: $pkg is still not installed" >&2
      exit 1
    fi
    log "installed: $pkg $version"
  done
fi

log "verifying tools:"
for cmd in "/usr/bin/rustc --version" "/usr/bin/cargo --version" "wasm-ld-22 --version" "wasm-objdump --version"; do
  # shellcheck disable=SC2086
  if ! out="$($cmd 2>&1)"; then
    log "error: '$cmd' failed: $out" >&2
    exit 1
  fi
  log "  $cmd -> $out"
done
if [ ! -d /usr/lib/rustlib/src/rust/library ]; then
  log "error: /usr/lib/rustlib/src/rust/library missing (rust-web-src)" >&2
  exit 1
fi
log "ok"
