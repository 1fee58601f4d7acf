/**
 * The in-browser fine-tuning page: `npm run example:browser` (dev server) or
 * `npx vite build -c examples/browser/vite.config.ts` (static files in examples/browser/dist/).
 *
 * The page is built from the package's own sources: src/worker.ts imports ../../../src/ directly,
 * so neither the rollup dist/ nor an npm install of the package is needed.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  worker: { format: 'es' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 4096,
  },
  server: { fs: { allow: [fileURLToPath(new URL('../../', import.meta.url))] } },
});
