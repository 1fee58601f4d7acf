/**
 * The WebGPU kernel suite in headless Chromium (Debian's /usr/bin/chromium, SwiftShader's
 * Vulkan adapter) through Vitest browser mode: `npm run test:browser`.
 * The kernel suites run the WebGPU backend against the float64 references (test/linear_attn/kernels.test.ts
 * picks 'webgpu-browser' in a window); test/tfjs/webgpu_op.test.ts runs the TF.js op on TF.js's
 * own `webgpu` backend against the wasm kernels.
 */
import { playwright } from '@vitest/browser-playwright';
import { defineConfig } from 'vitest/config';

const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export default defineConfig({
  // Pre-bundled up front: a dependency first found at run time (the test imports the TF.js
  // webgpu backend dynamically) would make Vite reload the page mid-run.
  optimizeDeps: { include: ['@tensorflow/tfjs', '@tensorflow/tfjs-backend-webgpu'] },
  test: {
    include: ['test/linear_attn/kernels.test.ts', 'test/linear_attn/webgpu_backend.test.ts', 'test/tfjs/webgpu_op.test.ts', 'test/tfjs/slim_webgpu.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    browser: {
      enabled: true,
      headless: true,
      screenshotFailures: false,
      provider: playwright({
        launchOptions: {
          executablePath,
          args: [
            '--no-sandbox',
            '--disable-gpu-sandbox',
            '--enable-unsafe-webgpu',
            '--enable-features=Vulkan',
            '--use-angle=swiftshader',
            '--use-webgpu-adapter=swiftshader',
          ],
        },
      }),
      instances: [{ browser: 'chromium' }],
    },
  },
});
