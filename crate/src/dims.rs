//! Problem sizes, feature-map choice and argument errors.

/// Sizes of one call. `bh` independent `(batch, head)` slices of `t` tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub bh: usize,
    /// Heads (the projection `omega` is per head: slice `i` uses head `i % h`).
    pub h: usize,
    pub t: usize,
    /// Query/key width.
    pub d: usize,
    /// Features.
    pub m: usize,
    /// Value width.
    pub dv: usize,
    /// Chunk length `C ≥ 1` (any `t`; the last chunk may be shorter).
    pub chunk: usize,
}

/// Feature maps (see `linear_attn/README.md`). `Identity` is the entry point for
/// precomputed features: `q` and `k` are then `ΦQ`, `ΦK` with `d = m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    Favor,
    Relu,
    Elu1,
    Sqr,
    Identity,
}

impl Feature {
    pub fn from_code(code: u32) -> Option<Feature> {
        Some(match code {
            0 => Feature::Favor,
            1 => Feature::Relu,
            2 => Feature::Elu1,
            3 => Feature::Sqr,
            4 => Feature::Identity,
            _ => return None,
        })
    }
    pub fn stabilised(self) -> bool {
        self == Feature::Favor
    }
}

/// Why a call was refused. The wasm layer turns these into negative status codes; the
/// TypeScript side validates first and names the argument, so these are a second line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DimError {
    ZeroDim,
    NeedsOmega,
    IdentityWidth,
    Length,
}

impl Dims {
    pub fn validate(&self, feature: Feature, has_omega: bool) -> Result<(), DimError> {
        if self.bh == 0 || self.h == 0 || self.t == 0 || self.d == 0 || self.m == 0 || self.dv == 0 || self.chunk == 0 {
            return Err(DimError::ZeroDim);
        }
        if !self.bh.is_multiple_of(self.h) {
            return Err(DimError::Length);
        }
        if feature == Feature::Favor && !has_omega {
            return Err(DimError::NeedsOmega);
        }
        if (feature == Feature::Identity || !has_omega) && feature != Feature::Favor && self.m != self.d {
            return Err(DimError::IdentityWidth);
        }
        Ok(())
    }
    /// The chunk actually used: never longer than the sequence.
    pub fn c(&self) -> usize {
        self.chunk.min(self.t)
    }
    pub fn n_chunks(&self) -> usize {
        self.t.div_ceil(self.c())
    }
}

impl Dims {
    /// An upper bound on the scratch memory any kernel allocates for these sizes (bytes).
    /// It depends on the chunk, never on `t` beyond one offset per chunk.
    pub fn workspace_bytes(&self) -> usize {
        let (c, d, m, dv) = (self.c(), self.d, self.m, self.dv);
        let f32s = 12 * c * m + 4 * c * c + 6 * c * dv + 6 * m * dv + 4 * c + 4 * m + d * m + 2 * c * c.max(m);
        let f64s = 4 * m * dv + 4 * m;
        4 * f32s + 8 * f64s + 4 * (self.n_chunks() + 1) + 4096
    }
}
