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

export interface CausalArgs extends FeatureSpec {
  /** `[b, h, t, d]` */
  q: Float32Array;
  /** `[b, h, t, d]` */
  k: Float32Array;
  /** `[b, h, t, dv]` */
  v: Float32Array;
  dims: Dims;
  /** Tokens per chunk (default 64). Results do not depend on it beyond rounding. */
  chunk?: number;
  /** Denominator guard (default 1e-16). */
  eps?: number;
}

export interface CausalForwardArgs extends CausalArgs {
  /** Carried state from an earlier call (default: empty). */
  state?: AttnState;
}

export interface CausalBackwardArgs extends CausalArgs {
  /** The state the forward started from (default: empty). */
  stateIn?: AttnState;
  /** The state the forward returned. */
  stateOut: AttnState;
  /** The forward's output, if kept: the backward then skips recomputing it. */
  out?: Float32Array;
  /** `∂L/∂out`, `[b, h, t, dv]`. */
  dOut: Float32Array;
  /** `∂L/∂stateOut` (default: zero). */
  dState?: StateGrad;
}

export interface CausalGrads {
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
  /** Gradient of the input state. */
  dState: StateGrad;
}

export interface FeaturesArgs {
  /** `[b, h, t, m]` precomputed non-negative query features. */
  phiQ: Float32Array;
  /** `[b, h, t, m]` precomputed non-negative key features. */
  phiK: Float32Array;
  v: Float32Array;
  /** `d` is ignored (the features are `m` wide). */
  dims: Dims;
  chunk?: number;
  eps?: number;
}

export interface BidirectionalBackwardArgs extends CausalArgs {
  dOut: Float32Array;
}

export interface StepArgs extends FeatureSpec {
  /** `[b, h, d]` one token per slice */
  q: Float32Array;
  k: Float32Array;
  /** `[b, h, dv]` */
  v: Float32Array;
  /** `t` is ignored. */
  dims: Dims;
  state: AttnState;
  eps?: number;
}

/** `causalForwardFeatures`: precomputed features with a carried state. */
export interface FeaturesForwardArgs extends FeaturesArgs {
  state?: AttnState;
}

/** `causalBackwardFeatures`: as {@link CausalBackwardArgs}, over precomputed features. */
export interface FeaturesBackwardArgs extends FeaturesArgs {
  stateIn?: AttnState;
  stateOut: AttnState;
  out?: Float32Array;
  dOut: Float32Array;
  dState?: StateGrad;
}

/** `causalUnroll`: the state a slice started from, recovered from the state it ended with. */
export interface UnrollArgs extends Omit<CausalArgs, 'q' | 'eps'> {
  /** The state the forward returned after these keys and values. */
  stateOut: AttnState;
  /** `[b, h]` the FAVOR+ offsets of the state the forward started from. */
  offsetIn: Float64Array;
}

/** What a causal forward returns: the output `[b, h, t, dv]` and the state after the last token. */
export interface CausalForwardResult {
  out: Float32Array;
  state: AttnState;
}

/** What a bidirectional backward returns. */
export interface BidirectionalGrads {
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
}

/** What `causalBackwardFeatures` returns. */
export interface FeatureGrads {
  dPhiQ: Float32Array;
  dPhiK: Float32Array;
  dv: Float32Array;
  dState: StateGrad;
}
