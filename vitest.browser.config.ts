/**
 * The WebGPU kernel suite in headless Chromium (Debian's /usr/bin/chromium, SwiftShader's
 * Vulkan adapter) through Vitest browser mode: `npm run test:browser`.
 * The wasm backends are Node-only in this run; the same suite files run the WebGPU backend
 * against the float64 references (test/kernels.test.ts picks 'webgpu-browser' in a window).
 */
import { playwright } from '@vitest/browser-playwright';
import { defineConfig } from 'vitest/config';

const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export default defineConfig({
  test: {
    include: ['test/kernels.test.ts', 'test/webgpu.test.ts'],
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
