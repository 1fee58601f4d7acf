/** Feature maps; see crate/src/linear_attn/README.md for the exact definitions. */
export type FeatureMap = 'favor' | 'relu' | 'elu1' | 'sqr';

/** Problem sizes. Tensors are row-major `[b, h, t, ·]`. */
export interface Dims {
  /** batch */
  b: number;
  /** heads */
  h: number;
  /** tokens */
  t: number;
  /** query/key width */
  d: number;
  /** random features (must equal `d` when a non-`favor` map has no `omega`) */
  m: number;
  /** value width */
  dv: number;
}

/**
 * Carried attention state, one per `(b, h)`, kept in float64 so that chunks can be undone by
 * subtraction without drift. `S: [b, h, m, dv]`, `z: [b, h, m]`, `offset: [b, h]` (the FAVOR+
 * key stabiliser, `-Infinity` for an empty state, 0 for the other feature maps).
 */
export interface AttnState {
  S: Float64Array;
  z: Float64Array;
  offset: Float64Array;
}

/** Gradient with respect to a state (no gradient for the offset). */
export interface StateGrad {
  S: Float64Array;
  z: Float64Array;
}

export interface FeatureSpec {
  feature: FeatureMap;
  /** `[h, m, d]` projection rows, required for `favor`, optional for the others (identity, m = d). */
  omega?: Float32Array;
}
