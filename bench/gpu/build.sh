#!/usr/bin/env bash
# Bundles bench/gpu/bench.ts into bench/gpu/dist/bench.mjs (only `webgpu` external) and copies the
# WGSL files beside it (the bundle reads them from its own folder, shaders/index.ts fs path).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
rm -rf bench/gpu/dist && mkdir -p bench/gpu/dist
npx esbuild bench/gpu/bench.ts --bundle --platform=node --format=esm --target=node20 \
  --external:webgpu --outfile=bench/gpu/dist/bench.mjs --log-level=warning
cp src/webgpu/shaders/*.wgsl bench/gpu/dist/
cp bench/gpu/torch_chunked.py bench/gpu/dist/
echo "built bench/gpu/dist ($(du -sh bench/gpu/dist | cut -f1))"
