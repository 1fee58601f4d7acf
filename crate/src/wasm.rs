//! The only pointer code: `extern "C"` exports over linear memory.
//!
//! Buffers come from `sp_alloc` (16-byte aligned, null when memory cannot grow) and go back
//! through `sp_free` with the same size. Every kernel returns a status: 0 on success or a
//! negative `Status`. A null pointer (0) for an optional argument means "absent".

use crate::dims::{DimError, Dims, Feature};
use crate::linear_attn::causal_backward::Grads;
use crate::linear_attn::{self, FeatureArgs, Qkv, State, StateMut};
use crate::simd;
use core::slice;
use std::alloc::{alloc, dealloc, GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting every byte the module holds (buffers and kernel scratch),
/// so callers can see the peak a kernel reached.
struct Counting;

static HEAP: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let now = HEAP.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        HEAP.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[repr(i32)]
enum Status {
    Ok = 0,
    ZeroDim = -1,
    NeedsOmega = -2,
    IdentityWidth = -3,
    Length = -4,
    OutOfMemory = -5,
    StateMismatch = -6,
    BadFeature = -7,
    Unrecoverable = -8,
    /// Finite inputs whose result overflows f32 (FAVOR+ logits or prefix sums beyond ±3.4e38).
    NotFinite = -9,
    /// A NaN or ±inf in an f32 input (`q`, `k`, `v`, `out`, `dOut`): the host names the value.
    InputNotFinite = -10,
}

fn layout(bytes: usize) -> Option<Layout> {
    Layout::from_size_align(bytes.max(1), 16).ok()
}

#[no_mangle]
pub extern "C" fn sp_alloc(bytes: usize) -> *mut u8 {
    let Some(l) = layout(bytes) else { return core::ptr::null_mut() };
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc(l) };
    if !p.is_null() {
        LIVE.fetch_add(bytes, Ordering::Relaxed);
    }
    p
}

/// # Safety
/// `p` must come from `sp_alloc(bytes)` and not have been freed.
#[no_mangle]
pub unsafe extern "C" fn sp_free(p: *mut u8, bytes: usize) {
    if p.is_null() {
        return;
    }
    if let Some(l) = layout(bytes) {
        dealloc(p, l);
        LIVE.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Bytes currently handed out by `sp_alloc`.
#[no_mangle]
pub extern "C" fn sp_live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Largest number of heap bytes held at once since the last `sp_reset_peak` (buffers from
/// `sp_alloc` plus the kernels' own scratch).
#[no_mangle]
pub extern "C" fn sp_peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Heap bytes held now.
#[no_mangle]
pub extern "C" fn sp_heap_bytes() -> usize {
    HEAP.load(Ordering::Relaxed)
}

/// Starts a new peak measurement from the bytes held now.
#[no_mangle]
pub extern "C" fn sp_reset_peak() {
    PEAK.store(HEAP.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// The instruction set this binary was built for: 0 scalar, 1 SIMD128, 2 SIMD128 + relaxed SIMD.
#[no_mangle]
pub extern "C" fn sp_simd() -> i32 {
    if cfg!(target_feature = "relaxed-simd") {
        2
    } else {
        cfg!(target_feature = "simd128") as i32
    }
}

/// Makes sure the kernels' scratch can be allocated, so an allocation inside a kernel never
/// aborts: the probe's memory stays with the allocator for the kernel to reuse.
fn reserve(dims: &Dims) -> Result<(), Status> {
    let bytes = dims.workspace_bytes();
    let Some(l) = layout(bytes) else { return Err(Status::OutOfMemory) };
    // SAFETY: non-zero size; freed right away with the same layout.
    unsafe {
        let p = alloc(l);
        if p.is_null() {
            return Err(Status::OutOfMemory);
        }
        dealloc(p, l);
    }
    Ok(())
}

fn check(dims: &Dims, feature: u32, omega: *const f32) -> Result<Feature, Status> {
    let f = Feature::from_code(feature).ok_or(Status::BadFeature)?;
    let has_omega = !omega.is_null() && f != Feature::Identity;
    dims.validate(f, has_omega).map_err(|e| match e {
        DimError::ZeroDim => Status::ZeroDim,
        DimError::NeedsOmega => Status::NeedsOmega,
        DimError::IdentityWidth => Status::IdentityWidth,
        DimError::Length => Status::Length,
    })?;
    reserve(dims)?;
    Ok(f)
}

unsafe fn r<'a, T>(p: *const T, n: usize) -> &'a [T] {
    slice::from_raw_parts(p, n)
}

unsafe fn w<'a, T>(p: *mut T, n: usize) -> &'a mut [T] {
    slice::from_raw_parts_mut(p, n)
}

unsafe fn opt<'a, T>(p: *const T, n: usize) -> Option<&'a [T]> {
    (!p.is_null()).then(|| slice::from_raw_parts(p, n))
}

/// `Err(NotFinite)` unless every value is finite: no kernel returns NaN or ±inf silently.
#[inline(never)]
fn finite32(x: &[f32]) -> Result<(), Status> {
    if simd::all_finite(x) {
        Ok(())
    } else {
        Err(Status::NotFinite)
    }
}

/// `Err(InputNotFinite)` unless every f32 input is finite. Checked here, after the copy into
/// linear memory, rather than by a JavaScript scan that cost about a tenth of a forward.
#[inline(never)]
fn finite_inputs(xs: &[&[f32]]) -> Result<(), Status> {
    if xs.iter().all(|x| simd::all_finite(x)) {
        Ok(())
    } else {
        Err(Status::InputNotFinite)
    }
}

fn finite64(x: &[f64]) -> Result<(), Status> {
    if x.iter().all(|e| e.is_finite()) {
        Ok(())
    } else {
        Err(Status::NotFinite)
    }
}

/// [`finite64`] over a state written by a kernel; its offsets may be `-inf` (the empty state's).
unsafe fn finite_state(dims: &Dims, s: *const f64, z: *const f64, o: *const f64) -> Result<(), Status> {
    let st = state(dims, s, z, o).ok_or(Status::Length)?;
    finite64(st.s)?;
    finite64(st.z)?;
    if st.offset.iter().all(|&e| e.is_finite() || e == f64::NEG_INFINITY) {
        Ok(())
    } else {
        Err(Status::NotFinite)
    }
}

fn status(res: Result<(), Status>) -> i32 {
    match res {
        Ok(()) => Status::Ok as i32,
        Err(s) => s as i32,
    }
}

unsafe fn feature_args<'a>(dims: &Dims, f: Feature, omega: *const f32, eps: f32) -> FeatureArgs<'a> {
    let omega = if f == Feature::Identity { None } else { opt(omega, dims.h * dims.m * dims.d) };
    FeatureArgs { kind: f, omega, eps }
}

unsafe fn qkv<'a>(dims: &Dims, q: *const f32, k: *const f32, v: *const f32) -> Qkv<'a> {
    let (nq, nv) = (dims.bh * dims.t * dims.d, dims.bh * dims.t * dims.dv);
    Qkv { q: r(q, nq), k: r(k, nq), v: r(v, nv) }
}

unsafe fn state<'a>(dims: &Dims, s: *const f64, z: *const f64, o: *const f64) -> Option<State<'a>> {
    (!s.is_null()).then(|| State {
        s: r(s, dims.bh * dims.m * dims.dv),
        z: r(z, dims.bh * dims.m),
        offset: r(o, dims.bh),
    })
}

unsafe fn state_mut<'a>(dims: &Dims, s: *mut f64, z: *mut f64, o: *mut f64) -> StateMut<'a> {
    StateMut { s: w(s, dims.bh * dims.m * dims.dv), z: w(z, dims.bh * dims.m), offset: w(o, dims.bh) }
}

#[allow(clippy::too_many_arguments)]
fn dims_of(bh: usize, h: usize, t: usize, d: usize, m: usize, dv: usize, chunk: usize) -> Dims {
    Dims { bh, h, t, d, m, dv, chunk }
}

/// Causal forward. Input state `(s_in, z_in, off_in)` optional (0 = empty).
///
/// # Safety
/// Every non-null pointer must point to a buffer of the size its shape implies.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sp_causal_forward(
    bh: usize,
    h: usize,
    t: usize,
    d: usize,
    m: usize,
    dv: usize,
    chunk: usize,
    feature: u32,
    eps: f32,
    q: *const f32,
    k: *const f32,
    v: *const f32,
    omega: *const f32,
    s_in: *const f64,
    z_in: *const f64,
    off_in: *const f64,
    out: *mut f32,
    s_out: *mut f64,
    z_out: *mut f64,
    off_out: *mut f64,
) -> i32 {
    let dims = dims_of(bh, h, t, d, m, dv, chunk);
    status(check(&dims, feature, omega).and_then(|f| {
        let fa = feature_args(&dims, f, omega, eps);
        let x = qkv(&dims, q, k, v);
        finite_inputs(&[x.q, x.k, x.v])?;
        let so = state_mut(&dims, s_out, z_out, off_out);
        linear_attn::causal_forward(&dims, &fa, x, state(&dims, s_in, z_in, off_in), w(out, bh * t * dv), so);
        finite32(r(out, bh * t * dv))?;
        finite_state(&dims, s_out, z_out, off_out)
    }))
}

/// Causal backward. `(s_out, z_out, off_out)` is the forward's output state (required);
/// the input state, the forward's `out` and the output-state gradient `(ds_out, dz_out)` are
/// optional.
///
/// # Safety
/// Every non-null pointer must point to a buffer of the size its shape implies.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sp_causal_backward(
    bh: usize,
    h: usize,
    t: usize,
    d: usize,
    m: usize,
    dv: usize,
    chunk: usize,
    feature: u32,
    eps: f32,
    q: *const f32,
    k: *const f32,
    v: *const f32,
    omega: *const f32,
    s_in: *const f64,
    z_in: *const f64,
    off_in: *const f64,
    s_out: *const f64,
    z_out: *const f64,
    off_out: *const f64,
    out: *const f32,
    d_out: *const f32,
    ds_out: *const f64,
    dz_out: *const f64,
    dq: *mut f32,
    dk: *mut f32,
    dvv: *mut f32,
    ds_in: *mut f64,
    dz_in: *mut f64,
) -> i32 {
    let dims = dims_of(bh, h, t, d, m, dv, chunk);
    status(check(&dims, feature, omega).and_then(|f| {
        let fa = feature_args(&dims, f, omega, eps);
        let (nq, nv, ns) = (bh * t * d, bh * t * dv, bh * m * dv);
        let d_state = (!ds_out.is_null()).then(|| (r(ds_out, ns), r(dz_out, bh * m)));
        let g = Grads { dq: w(dq, nq), dk: w(dk, nq), dv: w(dvv, nv), ds: w(ds_in, ns), dz: w(dz_in, bh * m) };
        let so = state(&dims, s_out, z_out, off_out).ok_or(Status::Length)?;
        let x = qkv(&dims, q, k, v);
        finite_inputs(&[x.q, x.k, x.v, r(d_out, nv), opt(out, nv).unwrap_or(&[])])?;
        linear_attn::causal_backward(
            &dims,
            &fa,
            x,
            state(&dims, s_in, z_in, off_in),
            so,
            opt(out, nv),
            r(d_out, nv),
            d_state,
            g,
        )
        .map_err(|_| Status::StateMismatch)?;
        finite32(r(dq, nq))?;
        finite32(r(dk, nq))?;
        finite32(r(dvv, nv))?;
        finite64(r(ds_in, ns))?;
        finite64(r(dz_in, bh * m))
    }))
}

/// Recovers the input state of a causal forward from its output state, `k`, `v` and the
/// input offset `off_in: [bh]` (see `linear_attn::causal_unroll`).
///
/// # Safety
/// Every pointer must point to a buffer of the size its shape implies.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sp_causal_unroll(
    bh: usize,
    h: usize,
    t: usize,
    d: usize,
    m: usize,
    dv: usize,
    chunk: usize,
    feature: u32,
    k: *const f32,
    v: *const f32,
    omega: *const f32,
    s_out: *const f64,
    z_out: *const f64,
    off_out: *const f64,
    off_in: *const f64,
    s_in: *mut f64,
    z_in: *mut f64,
    off_in_out: *mut f64,
) -> i32 {
    let dims = dims_of(bh, h, t, d, m, dv, chunk);
    status(check(&dims, feature, omega).and_then(|f| {
        let fa = feature_args(&dims, f, omega, 0.0);
        let so = state(&dims, s_out, z_out, off_out).ok_or(Status::Length)?;
        let si = state_mut(&dims, s_in, z_in, off_in_out);
        let (nk, nv) = (bh * t * d, bh * t * dv);
        finite_inputs(&[r(k, nk), r(v, nv)])?;
        linear_attn::causal_unroll(&dims, &fa, r(k, nk), r(v, nv), so, r(off_in, bh), si).map_err(|e| match e {
            linear_attn::causal_unroll::UnrollError::StateMismatch { .. } => Status::StateMismatch,
            linear_attn::causal_unroll::UnrollError::Unrecoverable { .. } => Status::Unrecoverable,
        })?;
        finite_state(&dims, s_in, z_in, off_in_out)
    }))
}

/// Bidirectional forward.
///
/// # Safety
/// Every non-null pointer must point to a buffer of the size its shape implies.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sp_bidirectional_forward(
    bh: usize,
    h: usize,
    t: usize,
    d: usize,
    m: usize,
    dv: usize,
    chunk: usize,
    feature: u32,
    eps: f32,
    q: *const f32,
    k: *const f32,
    v: *const f32,
    omega: *const f32,
    out: *mut f32,
) -> i32 {
    let dims = dims_of(bh, h, t, d, m, dv, chunk);
    status(check(&dims, feature, omega).and_then(|f| {
        let fa = feature_args(&dims, f, omega, eps);
        let x = qkv(&dims, q, k, v);
        finite_inputs(&[x.q, x.k, x.v])?;
        linear_attn::bidirectional_forward(&dims, &fa, x, w(out, bh * t * dv));
        finite32(r(out, bh * t * dv))
    }))
}

/// Bidirectional backward.
///
/// # Safety
/// Every non-null pointer must point to a buffer of the size its shape implies.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sp_bidirectional_backward(
    bh: usize,
    h: usize,
    t: usize,
    d: usize,
    m: usize,
    dv: usize,
    chunk: usize,
    feature: u32,
    eps: f32,
    q: *const f32,
    k: *const f32,
    v: *const f32,
    omega: *const f32,
    d_out: *const f32,
    dq: *mut f32,
    dk: *mut f32,
    dvv: *mut f32,
) -> i32 {
    let dims = dims_of(bh, h, t, d, m, dv, chunk);
    status(check(&dims, feature, omega).and_then(|f| {
        let fa = feature_args(&dims, f, omega, eps);
        let (nq, nv) = (bh * t * d, bh * t * dv);
        let x = qkv(&dims, q, k, v);
        finite_inputs(&[x.q, x.k, x.v, r(d_out, nv)])?;
        linear_attn::bidirectional_backward(&dims, &fa, x, r(d_out, nv), w(dq, nq), w(dk, nq), w(dvv, nv));
        finite32(r(dq, nq))?;
        finite32(r(dk, nq))?;
        finite32(r(dvv, nv))
    }))
}

/// One decoding step: `q, k: [bh, d]`, `v, out: [bh, dv]`, state in (required) and out.
///
/// # Safety
/// Every non-null pointer must point to a buffer of the size its shape implies.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sp_recurrent_step(
    bh: usize,
    h: usize,
    d: usize,
    m: usize,
    dv: usize,
    feature: u32,
    eps: f32,
    q: *const f32,
    k: *const f32,
    v: *const f32,
    omega: *const f32,
    s_in: *const f64,
    z_in: *const f64,
    off_in: *const f64,
    out: *mut f32,
    s_out: *mut f64,
    z_out: *mut f64,
    off_out: *mut f64,
) -> i32 {
    let dims = dims_of(bh, h, 1, d, m, dv, 1);
    status(check(&dims, feature, omega).and_then(|f| {
        let fa = feature_args(&dims, f, omega, eps);
        let si = state(&dims, s_in, z_in, off_in).ok_or(Status::Length)?;
        let so = state_mut(&dims, s_out, z_out, off_out);
        let x = qkv(&dims, q, k, v);
        finite_inputs(&[x.q, x.k, x.v])?;
        linear_attn::recurrent_step(&dims, &fa, x, si, w(out, bh * dv), so);
        finite32(r(out, bh * dv))?;
        finite_state(&dims, s_out, z_out, off_out)
    }))
}
