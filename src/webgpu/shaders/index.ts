/**
 * WGSL sources. Under Vite/Vitest (browser or Node) `import.meta.glob` inlines the `.wgsl`
 * files as strings; in plain Node (tsx, or a bundle with the `.wgsl` files copied beside it)
 * that call does not exist and the files are read from disk next to this module.
 */

export const SHADER_FILES = [
  'common',
  'tile',
  'grad_common',
  'grad_tile',
  'bidirectional_common',
  'bidirectional_grads',
  'bidirectional_parallel',
  'bidirectional_forward_parallel',
  'bidirectional_backward_parallel',
  'causal_forward',
  'chunk_parallel',
  'causal_forward_parallel',
  'causal_backward_parallel',
  'causal_backward',
  'bidirectional_forward',
  'bidirectional_backward',
  'fill',
] as const;
export type ShaderFile = (typeof SHADER_FILES)[number];

/** Kernel name → the files it is assembled from, in order. */
export const KERNEL_SOURCES = {
  causal_forward: ['common', 'tile', 'causal_forward'],
  causal_forward_parallel: ['common', 'tile', 'chunk_parallel', 'causal_forward_parallel'],
  causal_backward_parallel: ['common', 'tile', 'grad_common', 'grad_tile', 'chunk_parallel', 'causal_backward_parallel'],
  causal_backward: ['common', 'tile', 'grad_common', 'grad_tile', 'causal_backward'],
  bidirectional_forward: ['common', 'tile', 'bidirectional_common', 'bidirectional_forward'],
  bidirectional_backward: ['common', 'tile', 'grad_common', 'grad_tile', 'bidirectional_common', 'bidirectional_grads', 'bidirectional_backward'],
  bidirectional_forward_parallel: ['common', 'tile', 'chunk_parallel', 'bidirectional_common', 'bidirectional_parallel', 'bidirectional_forward_parallel'],
  bidirectional_backward_parallel: [
    'common',
    'tile',
    'grad_common',
    'grad_tile',
    'chunk_parallel',
    'bidirectional_common',
    'bidirectional_grads',
    'bidirectional_parallel',
    'bidirectional_backward_parallel',
  ],
  fill: ['fill'],
} as const satisfies Record<string, readonly ShaderFile[]>;
export type KernelName = keyof typeof KERNEL_SOURCES;

/** How the sources were found: 'vite' (inlined at build time) or 'fs' (read at run time). */
export type ShaderOrigin = 'vite' | 'fs';

let loaded: Promise<{ files: Record<ShaderFile, string>; origin: ShaderOrigin }> | undefined;

function fromVite(): Record<string, string> | undefined {
  try {
    // Replaced by Vite with an object of the files' text; a TypeError in plain Node.
    // biome-ignore lint/suspicious/noTsIgnore: vite/client types may or may not be present (an expect-error would fail where they are)
    // @ts-ignore -- import.meta.glob is a Vite extension
    const mods = import.meta.glob('./*.wgsl', { query: '?raw', import: 'default', eager: true }) as Record<string, string>;
    const out: Record<string, string> = {};
    for (const [path, text] of Object.entries(mods)) out[path.replace(/^.*\//, '').replace(/\.wgsl$/, '')] = text;
    return out;
  } catch {
    return undefined;
  }
}

async function fromFs(): Promise<Record<string, string>> {
  const spec = 'node:fs/promises';
  const fs = (await import(/* @vite-ignore */ spec)) as typeof import('node:fs/promises');
  const out: Record<string, string> = {};
  for (const name of SHADER_FILES) out[name] = await fs.readFile(new URL(`./${name}.wgsl`, import.meta.url), 'utf8');
  return out;
}

/** Loads every `.wgsl` file once (cached). `origin` forces a path (tests check both). */
export function loadShaders(origin?: ShaderOrigin): Promise<{ files: Record<ShaderFile, string>; origin: ShaderOrigin }> {
  const go = async () => {
    const vite = origin === 'fs' ? undefined : fromVite();
    const files = vite ?? (origin === 'vite' ? undefined : await fromFs());
    if (!files) throw new Error('slim-performer/webgpu: WGSL sources are not inlined (not built by Vite)');
    for (const name of SHADER_FILES) {
      if (typeof files[name] !== 'string') throw new Error(`slim-performer/webgpu: shader ${name}.wgsl is missing`);
    }
    return { files: files as Record<ShaderFile, string>, origin: vite ? ('vite' as const) : ('fs' as const) };
  };
  if (origin) return go();
  loaded ??= go().catch((e) => {
    loaded = undefined;
    throw e;
  });
  return loaded;
}

/** The full WGSL text of a kernel. */
export function kernelSource(files: Record<ShaderFile, string>, kernel: KernelName): string {
  return KERNEL_SOURCES[kernel].map((f) => `// ---- ${f}.wgsl\n${files[f]}`).join('\n');
}
