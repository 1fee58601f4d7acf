/**
 * `slim-performer/parallel`: the kernels over a pool of workers, one kernel instance each, with
 * the `b·h` slices of every call split between them (results equal a single instance's bit for
 * bit). `await createPool({ threads })`; `pool.info` says how many threads and why.
 */
export { KernelPool, createPool, detectThreads, type PoolInfo, type PoolMode, type PoolOptions, type ThreadSupport } from './pool.ts';
