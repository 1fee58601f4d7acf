#!/usr/bin/env bash
# Build the slim-kernels WebAssembly binaries reproducibly.
#
#   bash scripts/build-wasm.sh           build wasm/slim_kernels_{relaxed,simd,scalar}.wasm,
#                                        write wasm/TOOLCHAIN.txt (toolchain + sha256 of each binary)
#   bash scripts/build-wasm.sh --check   rebuild in a temporary directory and compare with wasm/*.wasm
#
# Toolchain: Debian's rustc-web/cargo-web/rust-web-src + lld-22 + wabt (scripts/install-toolchain.sh).
# Debian ships no wasm32 std, so std is rebuilt from rust-web-src with -Zbuild-std (RUSTC_BOOTSTRAP=1).
# /usr/bin/cargo and /usr/bin/rustc are used explicitly: a rustup cargo earlier in PATH has no wasm32 std.
#
# Reproducibility: every absolute path that can reach the binary (checkout, cargo home, rust sources,
# cargo target dir) is remapped with --remap-path-prefix, the environment is pinned, user cargo config
# is ignored (private CARGO_HOME), and the build is offline against the vendored std dependencies.
# The result is byte-identical across checkout paths and machines with the same Debian packages.
#
# --check outcomes:
#   identical                                   -> "OK", exit 0
#   different, toolchain differs from TOOLCHAIN.txt -> loud notice, exit 0; fresh binaries are copied to
#                                                  target/fresh-wasm/ and that path is written to
#                                                  target/fresh-wasm-dir (CI then also tests them)
#   different, same toolchain                   -> error, exit 1 (rebuild with `npm run build:wasm`)
#
# Environment:
#   SLIM_ALLOW_NO_SIMD=1   only warn (instead of failing) when the SIMD binary has no SIMD opcodes
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO_ROOT"

MODE=build
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac

log() { printf '[build-wasm] %s\n' "$*"; }
die() {
  printf '[build-wasm] ERROR: %s\n' "$*" >&2
  exit 1
}

RUSTC_BIN=/usr/bin/rustc
CARGO_BIN=/usr/bin/cargo
WASM_LD=wasm-ld-22
TARGET=wasm32-unknown-unknown
WASM_DIR="$REPO_ROOT/wasm"
OUT_NAMES=(slim_kernels_relaxed.wasm slim_kernels_simd.wasm slim_kernels_scalar.wasm)

for tool in "$RUSTC_BIN" "$CARGO_BIN" "$WASM_LD" wasm-objdump sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found; run scripts/install-toolchain.sh"
done

# ---------------------------------------------------------------- pinned environment
export LC_ALL=C TZ=UTC
export SOURCE_DATE_EPOCH=315532800 # 1980-01-01; nothing in the wasm build embeds time, pinned anyway
export CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never
export RUSTC="$RUSTC_BIN" RUSTC_BOOTSTRAP=1
unset RUSTFLAGS RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET \
  CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTC_WRAPPER \
  CARGO_PROFILE_RELEASE_DEBUG CARGO_PROFILE_RELEASE_STRIP CARGO_PROFILE_RELEASE_LTO \
  CARGO_PROFILE_RELEASE_OPT_LEVEL CARGO_PROFILE_RELEASE_CODEGEN_UNITS CARGO_PROFILE_RELEASE_PANIC
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep -E '^CARGO_(TARGET_WASM32|PROFILE_)' || true)

USER_CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
SYSROOT="$("$RUSTC_BIN" --print sysroot)"
RUST_SRC="$SYSROOT/lib/rustlib/src/rust"
[ -d "$RUST_SRC/library" ] || die "$RUST_SRC/library missing; install rust-web-src (scripts/install-toolchain.sh)"
RUST_SRC_REAL="$(cd "$RUST_SRC" && pwd -P)" # /usr/lib/rustlib/src/rust is a symlink to /usr/src/rustc-X
RUSTC_COMMIT="$("$RUSTC_BIN" -vV | sed -n 's/^commit-hash: //p')"
RUSTC_COMMIT="${RUSTC_COMMIT:-unknown}"

# ---------------------------------------------------------------- toolchain description
toolchain_description() {
  printf 'rustc: %s\n' "$("$RUSTC_BIN" -vV | head -n1)"
  printf 'rustc-llvm: %s\n' "$("$RUSTC_BIN" -vV | sed -n 's/^LLVM version: //p')"
  printf 'cargo: %s\n' "$("$CARGO_BIN" --version)"
  local pkg ver
  for pkg in rustc-web cargo-web rust-web-src lld-22; do
    ver="$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)"
    printf 'dpkg: %s %s\n' "$pkg" "${ver:-not-installed}"
  done
  printf 'wasm-ld: %s\n' "$("$WASM_LD" --version | head -n1)"
  printf 'target: %s\n' "$TARGET"
}

# ---------------------------------------------------------------- build one variant
# build_variant <relaxed|simd|scalar> <cargo target dir> <output file>
build_variant() {
  local variant="$1" target_dir="$2" out="$3" feature
  case "$variant" in
    relaxed) feature="+simd128,+relaxed-simd" ;;
    simd) feature="+simd128" ;;
    scalar) feature="-simd128" ;;
    *) die "unknown variant $variant" ;;
  esac
  mkdir -p "$target_dir"
  target_dir="$(cd "$target_dir" && pwd -P)"
  local cargo_home="$target_dir/cargo-home" # private: ignores ~/.cargo/config.toml, no registry needed
  mkdir -p "$cargo_home"

  # Later --remap-path-prefix flags win, so the most specific prefixes come last.
  local flags=(
    -C "target-feature=$feature"
    -C "linker=$WASM_LD"
    # No panic machinery (formatting, locations) in the binary: smaller, and free of line numbers.
    -Z unstable-options -C panic=immediate-abort
    "--remap-path-prefix=$USER_CARGO_HOME=/cargo"
    "--remap-path-prefix=$RUST_SRC_REAL=/rustc/$RUSTC_COMMIT"
    "--remap-path-prefix=$RUST_SRC=/rustc/$RUSTC_COMMIT"
    "--remap-path-prefix=$REPO_ROOT=/slim-performer"
    "--remap-path-prefix=$target_dir=/target"
    "--remap-path-prefix=$cargo_home=/cargo"
  )
  # CARGO_ENCODED_RUSTFLAGS (0x1f-separated) survives spaces in paths, unlike RUSTFLAGS.
  local encoded
  encoded="$(printf '%s\x1f' "${flags[@]}")"
  encoded="${encoded%$'\x1f'}"

  local locked=()
  [ -f "$REPO_ROOT/Cargo.lock" ] && locked=(--locked)

  log "building $variant (target-feature=$feature) in $target_dir"
  local start=$SECONDS
  CARGO_HOME="$cargo_home" CARGO_TARGET_DIR="$target_dir" CARGO_ENCODED_RUSTFLAGS="$encoded" \
    "$CARGO_BIN" build --release --offline "${locked[@]}" --target "$TARGET" \
    -Zbuild-std=std,panic_abort \
    --config "source.crates-io.replace-with='vendored'" \
    --config "source.vendored.directory='$RUST_SRC/library/vendor'" \
    --manifest-path "$REPO_ROOT/Cargo.toml" -p slim-kernels
  local built="$target_dir/$TARGET/release/slim_kernels.wasm"
  [ -f "$built" ] || die "cargo did not produce $built"
  install -m 0644 "$built" "$out"
  log "built $variant in $((SECONDS - start))s: $(wc -c <"$out") bytes"
}

# ---------------------------------------------------------------- SIMD proof
simd_op_count() {
  local dump
  dump="$(wasm-objdump -d "$1")" || die "wasm-objdump failed on $1"
  grep -cE 'f32x4|v128' <<<"$dump" || true
}

relaxed_op_count() {
  local dump
  dump="$(wasm-objdump -d "$1")" || die "wasm-objdump failed on $1"
  grep -c 'relaxed' <<<"$dump" || true
}

# verify_simd <relaxed.wasm> <simd.wasm> <scalar.wasm>
verify_simd() {
  local simd_count scalar_count relaxed_in_relaxed relaxed_in_simd
  relaxed_in_relaxed="$(relaxed_op_count "$1")"
  relaxed_in_simd="$(relaxed_op_count "$2")"
  simd_count="$(simd_op_count "$2")"
  scalar_count="$(simd_op_count "$3")"
  log "SIMD opcode lines (f32x4|v128): simd=$simd_count scalar=$scalar_count"
  log "relaxed-SIMD opcode lines: relaxed=$relaxed_in_relaxed simd=$relaxed_in_simd"
  if [ "$scalar_count" -ne 0 ]; then
    die "scalar binary $3 contains $scalar_count SIMD opcode lines (expected 0)"
  fi
  if [ "$relaxed_in_simd" -ne 0 ]; then
    die "SIMD binary $2 contains $relaxed_in_simd relaxed-SIMD opcode lines (expected 0: it must run where relaxed SIMD is missing)"
  fi
  if [ "$relaxed_in_relaxed" -eq 0 ]; then
    die "relaxed binary $1 contains no relaxed-SIMD opcodes (f32x4.relaxed_madd expected)"
  fi
  if [ "$simd_count" -eq 0 ]; then
    if [ "${SLIM_ALLOW_NO_SIMD:-}" = "1" ]; then
      log "WARNING: SIMD binary $2 contains no SIMD opcodes (allowed by SLIM_ALLOW_NO_SIMD=1)"
    else
      die "SIMD binary $2 contains no SIMD opcodes (set SLIM_ALLOW_NO_SIMD=1 to allow while the crate is a placeholder)"
    fi
  fi
}

# build_all <out dir> <cargo target base dir>   -> writes the three binaries + TOOLCHAIN.txt into <out dir>
build_all() {
  local out_dir="$1" base="$2"
  mkdir -p "$out_dir"
  build_variant relaxed "$base/wasm-relaxed" "$out_dir/slim_kernels_relaxed.wasm"
  build_variant simd "$base/wasm-simd" "$out_dir/slim_kernels_simd.wasm"
  build_variant scalar "$base/wasm-scalar" "$out_dir/slim_kernels_scalar.wasm"
  verify_simd "$out_dir/slim_kernels_relaxed.wasm" "$out_dir/slim_kernels_simd.wasm" "$out_dir/slim_kernels_scalar.wasm"
  {
    echo "# Toolchain that produced the .wasm files in this directory."
    echo "# Generated by scripts/build-wasm.sh; do not edit. Check with: npm run check:wasm"
    toolchain_description
    local name
    for name in "${OUT_NAMES[@]}"; do
      printf 'sha256: %s  %s\n' "$(sha256sum "$out_dir/$name" | cut -d' ' -f1)" "$name"
    done
  } >"$out_dir/TOOLCHAIN.txt"
}

toolchain_lines() { grep -vE '^(#|sha256:)' "$1" || true; }

# ---------------------------------------------------------------- modes
if [ "$MODE" = build ]; then
  start=$SECONDS
  build_all "$WASM_DIR" "$REPO_ROOT/target"
  log "wrote $WASM_DIR/TOOLCHAIN.txt:"
  sed 's/^/  /' "$WASM_DIR/TOOLCHAIN.txt"
  log "done in $((SECONDS - start))s"
  exit 0
fi

# --check
start=$SECONDS
mkdir -p "$REPO_ROOT/target"
rm -f "$REPO_ROOT/target/fresh-wasm-dir"
for name in "${OUT_NAMES[@]}" TOOLCHAIN.txt; do
  [ -f "$WASM_DIR/$name" ] || die "wasm/$name is missing; run npm run build:wasm and commit wasm/"
done
TMP="$(mktemp -d "${TMPDIR:-/tmp}/slim-wasm-check.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
build_all "$TMP/out" "$TMP"

mismatch=()
for name in "${OUT_NAMES[@]}"; do
  committed="$(sha256sum "$WASM_DIR/$name" | cut -d' ' -f1)"
  fresh="$(sha256sum "$TMP/out/$name" | cut -d' ' -f1)"
  if [ "$committed" = "$fresh" ]; then
    log "identical: $name $fresh"
  else
    log "DIFFERENT: $name committed=$committed fresh=$fresh"
    mismatch+=("$name")
  fi
done

if [ "${#mismatch[@]}" -eq 0 ]; then
  log "OK: fresh build is byte-identical to wasm/ ($((SECONDS - start))s)"
  exit 0
fi

FRESH_DIR="$REPO_ROOT/target/fresh-wasm"
rm -rf "$FRESH_DIR"
mkdir -p "$FRESH_DIR"
cp "$TMP/out/"* "$FRESH_DIR/"

if [ "$(toolchain_lines "$WASM_DIR/TOOLCHAIN.txt")" != "$(toolchain_lines "$TMP/out/TOOLCHAIN.txt")" ]; then
  cat <<EOF
##############################################################################################
##  NOTICE: THE WASM TOOLCHAIN MOVED
##  wasm/*.wasm was built with a different toolchain than the one installed here, and the
##  fresh build differs (${mismatch[*]}). Both builds are tested.
##  Toolchain diff (- recorded in wasm/TOOLCHAIN.txt, + installed):
$(diff <(toolchain_lines "$WASM_DIR/TOOLCHAIN.txt") <(toolchain_lines "$TMP/out/TOOLCHAIN.txt") | grep -E '^[<>]' | sed 's/^</##    -/; s/^>/##    +/')
##  Fresh binaries: $FRESH_DIR
##  To adopt them: npm run build:wasm && commit wasm/
##############################################################################################
EOF
  echo "$FRESH_DIR" >"$REPO_ROOT/target/fresh-wasm-dir"
  echo "SLIM_FRESH_WASM_DIR=$FRESH_DIR"
  if [ -n "${GITHUB_ENV:-}" ]; then echo "SLIM_FRESH_WASM_DIR=$FRESH_DIR" >>"$GITHUB_ENV"; fi
  log "toolchain moved: exit 0; fresh build dir written to target/fresh-wasm-dir ($((SECONDS - start))s)"
  exit 0
fi

die "wasm/ is stale: a fresh build with the SAME toolchain differs (${mismatch[*]}).
  The sources (crate/, Cargo.toml, Cargo.lock, scripts/build-wasm.sh) changed without rebuilding,
  or the build is not reproducible. Run 'npm run build:wasm' and commit wasm/.
  Fresh binaries for inspection: $FRESH_DIR"
