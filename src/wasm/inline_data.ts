/**
 * Placeholder for the inlined wasm binaries. The package build (rollup.config.mjs) replaces this
 * module with the base64 text of wasm/slim_kernels_{relaxed,simd,scalar}.wasm, generated into
 * dist/ and never committed; in the source tree all are null and `slim-performer/inline` falls
 * back to the package's .wasm files.
 */
export const RELAXED_BASE64: string | null = null;
export const SIMD_BASE64: string | null = null;
export const SCALAR_BASE64: string | null = null;
