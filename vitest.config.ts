import { defineConfig } from 'vitest/config';

// Node 20 (the floor) runs relaxed SIMD only behind a V8 flag; with it the suite covers all
// three wasm binaries there too. Node 21+ runs relaxed SIMD by default.
const nodeMajor = Number(process.versions.node.split('.')[0]);

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    execArgv: nodeMajor < 21 ? ['--experimental-wasm-relaxed-simd'] : [],
  },
});
