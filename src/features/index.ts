export {
  Rng,
  deriveSeed,
  headProjection,
  randomProjection,
  redrawSeed,
  FeatureRedraw,
} from './random.ts';
export type {
  Seed,
  NormMode,
  HeadProjectionOptions,
  RandomProjectionOptions,
  FeatureRedrawOptions,
} from './random.ts';
