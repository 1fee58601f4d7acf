/**
 * Preloaded (`node --import`) before a doc snippet marked `<!-- snippet: webgpu -->`: gives Node
 * what a browser has, `navigator.gpu` (test/util/node_gpu.ts), before the snippet's imports run
 * (`@tensorflow/tfjs-backend-webgpu` registers its backend only if navigator.gpu exists then).
 * Without any adapter it exits with SKIP_CODE.
 */
import { installNodeGpu } from '../util/node_gpu.ts';
import { SKIP_CODE } from './snippets.ts';

const why = await installNodeGpu();
if (why !== undefined) {
  process.stdout.write(`SNIPPET-SKIP: no WebGPU adapter in Node (${why}; Mesa's needs EGL_PLATFORM=surfaceless)\n`);
  process.exit(SKIP_CODE);
}
