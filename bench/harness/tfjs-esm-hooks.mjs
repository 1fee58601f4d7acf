// Node module resolve hook used by tfjs.ts: tfjs-core's ESM build (dist/**/*.js) uses
// extension-less relative imports ("./engine", "./gradients"), which Node's ESM resolver
// rejects. Resolve them to "<spec>.js" (a file wins over a same-named folder), else
// "<spec>/index.js". Everything else passes through.
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const isFile = (url) => {
  const p = fileURLToPath(url);
  return existsSync(p) && statSync(p).isFile();
};

export async function resolve(specifier, context, next) {
  const parent = context.parentURL ?? '';
  const relative = specifier.startsWith('./') || specifier.startsWith('../');
  if (relative && parent.includes('/@tensorflow/tfjs-core/dist/') && !specifier.endsWith('.js')) {
    const base = new URL(specifier, parent).href;
    for (const cand of [`${base}.js`, `${base}/index.js`]) {
      if (isFile(cand)) return next(cand, context);
    }
  }
  return next(specifier, context);
}
