//! scikit-image 0.26's `structural_similarity` on gray images, both variants in use:
//!
//! - [`SsimVariant::Gaussian`]: `gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
//!   data_range=1.0` (Wang et al. 2004; MindEye, Brain-Diffuser): an 11-tap Gaussian window
//!   truncated at 3.5 σ;
//! - [`SsimVariant::Uniform7`]: the library's defaults with `data_range=1.0` — a 7 × 7 mean
//!   window and the sample covariance (`N / (N − 1)`).
//!
//! The SSIM map is averaged after cropping `(win_size − 1) / 2` pixels from every border, as
//! scikit-image does; the cropped region never reads past the image, so the filters' boundary mode
//! (scipy's `reflect`, `d c b a | a b c d`) cannot change the result and no padding is built.
//!
//! The computation, in `f64` throughout (the parity tests hold it to scikit-image within 1e-12,
//! which rules out `f32` maps): the window is separable and symmetric; four filtered maps of
//! `s = x + y` and `d = x − y` (s, d, s², d²) give the five moments SSIM needs; a vertical pass
//! (four output rows per load of the image rows) then a horizontal pass per output row, the
//! symmetric taps folded, the SSIM map summed as it is formed, in bands of rows that
//! [`ssim_par`] spreads over threads. Four lanes at a time: AVX2 + FMA where the CPU has them
//! (detected at run time), a portable array elsewhere (`lanes.rs`). The result differs from
//! scikit-image's by rounding only (the parity tests hold it within 1e-12) and does not depend on
//! the thread count; FMA and non-FMA machines can differ in the last bits.

use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::lanes::Avx;
use super::lanes::{Lanes, One, Portable};

/// `K1` and `K2` of Wang et al. (scikit-image's defaults).
const K1: f64 = 0.01;
const K2: f64 = 0.03;

/// Which `structural_similarity` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SsimVariant {
    /// `gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0`.
    Gaussian,
    /// Library defaults (`win_size=7`, uniform, `use_sample_covariance=True`), `data_range=1.0`.
    Uniform7,
}

impl SsimVariant {
    /// The metric name in tables: `ssim_gaussian` or `ssim_uniform7`.
    pub fn metric(self) -> &'static str {
        match self {
            SsimVariant::Gaussian => "ssim_gaussian",
            SsimVariant::Uniform7 => "ssim_uniform7",
        }
    }

    /// The normalised 1-D window and the covariance normalisation.
    fn window(self) -> (Vec<f64>, f64) {
        match self {
            SsimVariant::Gaussian => (gaussian_kernel(1.5, 3.5), 1.0),
            SsimVariant::Uniform7 => (vec![1.0 / 7.0; 7], 49.0 / 48.0),
        }
    }

    /// The window's side.
    pub fn win_size(self) -> usize {
        self.window().0.len()
    }
}

/// scipy's `_gaussian_kernel1d(sigma, 0, radius)` with `radius = int(truncate · sigma + 0.5)`.
pub fn gaussian_kernel(sigma: f64, truncate: f64) -> Vec<f64> {
    let radius = (truncate * sigma + 0.5) as i64;
    let phi: Vec<f64> =
        (-radius..=radius).map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp()).collect();
    let sum: f64 = phi.iter().sum();
    phi.into_iter().map(|v| v / sum).collect()
}

/// Why two images have no SSIM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SsimError {
    /// The images differ in size, or the pixel count is not `height × width`.
    Shape(String),
    /// A side is smaller than the window (scikit-image: "win_size exceeds image extent").
    TooSmall {
        /// The window side.
        win_size: usize,
        /// Image width.
        width: usize,
        /// Image height.
        height: usize,
    },
}

impl std::fmt::Display for SsimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SsimError::Shape(m) => f.write_str(m),
            SsimError::TooSmall { win_size, width, height } => write!(
                f,
                "a {width}×{height} image is smaller than the {win_size}×{win_size} SSIM window"
            ),
        }
    }
}

impl std::error::Error for SsimError {}

/// Output rows per band: the unit of work of [`ssim_par`] and of the sum's order. The mean is
/// summed band by band in the same order whether the bands run on one thread or many, so
/// [`ssim`] and [`ssim_par`] return the same bits.
const BAND_ROWS: usize = 32;

/// Output rows per vertical step: the `STEP_ROWS + win − 1` image rows loaded once serve four
/// output rows.
const STEP_ROWS: usize = 4;

/// Checks the shapes; the window and the covariance normalisation.
fn prepare(
    x: &[f64],
    y: &[f64],
    width: usize,
    height: usize,
    variant: SsimVariant,
) -> Result<(Vec<f64>, f64), SsimError> {
    if x.len() != width * height || y.len() != width * height {
        return Err(SsimError::Shape(format!(
            "images of {} and {} pixels, expected {width}×{height}",
            x.len(),
            y.len()
        )));
    }
    let (w, cov_norm) = variant.window();
    if width < w.len() || height < w.len() {
        return Err(SsimError::TooSmall { win_size: w.len(), width, height });
    }
    Ok((w, cov_norm))
}

/// Mean SSIM of two gray `width × height` images (row-major, `data_range` 1), as
/// `structural_similarity(x, y, …)` returns it for `variant`. One thread; [`ssim_par`] splits one
/// pair over rayon's threads, [`ssim_many`] runs many pairs in parallel.
pub fn ssim(
    x: &[f64],
    y: &[f64],
    width: usize,
    height: usize,
    variant: SsimVariant,
) -> Result<f64, SsimError> {
    let (w, cov_norm) = prepare(x, y, width, height, variant)?;
    let (ch, cw) = (height + 1 - w.len(), width + 1 - w.len());
    let total: f64 = with_scratch(|scratch| {
        (0..ch.div_ceil(BAND_ROWS))
            .map(|b| band_sum(x, y, width, &w, cov_norm, band(b, ch), scratch))
            .sum()
    });
    Ok(total / (cw * ch) as f64)
}

/// [`ssim`] of one pair with its rows split in bands over rayon's threads: the same value, bit
/// for bit.
pub fn ssim_par(
    x: &[f64],
    y: &[f64],
    width: usize,
    height: usize,
    variant: SsimVariant,
) -> Result<f64, SsimError> {
    let (w, cov_norm) = prepare(x, y, width, height, variant)?;
    let (ch, cw) = (height + 1 - w.len(), width + 1 - w.len());
    let partial: Vec<f64> = (0..ch.div_ceil(BAND_ROWS))
        .into_par_iter()
        .map(|b| with_scratch(|scratch| band_sum(x, y, width, &w, cov_norm, band(b, ch), scratch)))
        .collect();
    Ok(partial.iter().sum::<f64>() / (cw * ch) as f64)
}

/// The output rows of band `b` of `ch`.
fn band(b: usize, ch: usize) -> Range<usize> {
    b * BAND_ROWS..((b + 1) * BAND_ROWS).min(ch)
}

thread_local! {
    /// Each thread's buffers, kept from band to band and call to call (they grow to the largest
    /// band seen: `(4·(32 + win − 1) + 16)·width` values, 0.6 MB at 425 columns), instead of a
    /// fresh zero-filled allocation per call (`ssim`) or per rayon split (`ssim_par`).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// `f` with this thread's [`Scratch`] (not re-entrant: `f` must not compute SSIM itself).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

/// Buffers one thread reuses from band to band.
#[derive(Default)]
struct Scratch {
    /// s = x + y, d = x − y, s², d² of the band's image rows (four planes).
    planes: Vec<f64>,
    /// The vertical pass of the four maps, `STEP_ROWS` rows each.
    vert: Vec<f64>,
}

/// The SSIM map summed over output rows `rows` (output row `r` is centred on image row
/// `r + radius`): AVX2 + FMA lanes where the CPU has them, else portable ones.
fn band_sum(
    x: &[f64],
    y: &[f64],
    width: usize,
    w: &[f64],
    cov_norm: f64,
    rows: Range<usize>,
    scratch: &mut Scratch,
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { band_sum_avx2(x, y, width, w, cov_norm, rows, scratch) };
    }
    band_sum_with::<Portable>(x, y, width, w, cov_norm, rows, scratch)
}

/// [`band_sum_with`] on [`Avx`] lanes, compiled for AVX2 and FMA (the only place an `Avx` is
/// made).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn band_sum_avx2(
    x: &[f64],
    y: &[f64],
    width: usize,
    w: &[f64],
    cov_norm: f64,
    rows: Range<usize>,
    scratch: &mut Scratch,
) -> f64 {
    band_sum_with::<Avx>(x, y, width, w, cov_norm, rows, scratch)
}

/// The window's size as a constant, so the tap loops unroll.
#[inline(always)]
fn band_sum_with<S: Lanes>(
    x: &[f64],
    y: &[f64],
    width: usize,
    w: &[f64],
    cov_norm: f64,
    rows: Range<usize>,
    scratch: &mut Scratch,
) -> f64 {
    match w.len() {
        11 => band_kernel::<S, 11>(x, y, width, w, cov_norm, rows, scratch),
        7 => band_kernel::<S, 7>(x, y, width, w, cov_norm, rows, scratch),
        n => unreachable!("no {n}-tap SSIM window"),
    }
}

/// One band. SSIM needs five local moments; with `s = x + y` and `d = x − y` four filtered maps
/// give them all (`μx² + μy² = (μs² + μd²)/2`, `2μxμy = (μs² − μd²)/2`, and the same for the
/// second moments), one fewer than x, y, x², y², xy. The maps' products are formed once per
/// pixel of the band's image rows; the vertical pass runs `STEP_ROWS` output rows at a time over every column, the
/// horizontal one over the kept columns, and the SSIM map is summed as it is formed. Both passes
/// fold the symmetric window (11 taps: 5 additions and 6 multiplications).
#[inline(always)]
fn band_kernel<S: Lanes, const WIN: usize>(
    x: &[f64],
    y: &[f64],
    width: usize,
    w: &[f64],
    cov_norm: f64,
    rows: Range<usize>,
    scratch: &mut Scratch,
) -> f64 {
    let cw = width + 1 - WIN;
    let n_out = rows.len();
    let n_in = n_out + WIN - 1;
    let plane = n_in * width;
    scratch.planes.resize(4 * plane, 0.0);
    let (ps, rest) = scratch.planes.split_at_mut(plane);
    let (pd, rest) = rest.split_at_mut(plane);
    let (pss, pdd) = rest.split_at_mut(plane);
    let src = rows.start * width..(rows.start + n_in) * width;
    let (xs, ys) = (&x[src.clone()], &y[src]);
    let bulk = plane / S::WIDTH * S::WIDTH;
    products::<S>(xs, ys, [&mut *ps, &mut *pd, &mut *pss, &mut *pdd], 0..bulk);
    products::<One>(xs, ys, [&mut *ps, &mut *pd, &mut *pss, &mut *pdd], bulk..plane);
    let planes = [&*ps, &*pd, &*pss, &*pdd];

    scratch.vert.resize(4 * STEP_ROWS * width, 0.0);
    let (wv, w1) = (Window::<S, WIN>::new(w), Window::<One, WIN>::new(w));
    let (k, k1) = (Consts::<S>::new(cov_norm), Consts::<One>::new(cov_norm));
    let hwide = cw / S::WIDTH * S::WIDTH;
    let mut sum = S::splat(0.0);
    let mut tail = One(0.0);
    for r0 in (0..n_out).step_by(STEP_ROWS) {
        let nr = STEP_ROWS.min(n_out - r0);
        for (p, out) in planes.iter().zip(scratch.vert.chunks_exact_mut(STEP_ROWS * width)) {
            vertical(&wv, p, out, width, r0, nr);
        }
        for r in 0..nr {
            let map = |m: usize| {
                let at = (m * STEP_ROWS + r) * width;
                &scratch.vert[at..at + width]
            };
            let maps = [map(0), map(1), map(2), map(3)];
            sum = horizontal(&wv, &k, maps, 0..hwide, sum);
            tail = horizontal(&w1, &k1, maps, hwide..cw, tail);
        }
    }
    (0..S::WIDTH).map(|j| sum.lane(j)).sum::<f64>() + tail.0
}

/// s, d, s², d² at `range`, `S::WIDTH` at a time (`range.len()` a multiple of it).
#[inline(always)]
fn products<S: Lanes>(xs: &[f64], ys: &[f64], out: [&mut [f64]; 4], range: Range<usize>) {
    let [ps, pd, pss, pdd] = out;
    for i in range.step_by(S::WIDTH) {
        let (a, b) = (S::load(xs, i), S::load(ys, i));
        let (s, d) = (a.add(b), a.sub(b));
        s.store(ps, i);
        d.store(pd, i);
        s.mul(s).store(pss, i);
        d.mul(d).store(pdd, i);
    }
}

/// The window's weights in lanes.
struct Window<S, const WIN: usize>([S; WIN]);

impl<S: Lanes, const WIN: usize> Window<S, WIN> {
    #[inline(always)]
    fn new(w: &[f64]) -> Self {
        let mut ws = [S::splat(0.0); WIN];
        for (l, &v) in ws.iter_mut().zip(w) {
            *l = S::splat(v);
        }
        Window(ws)
    }

    /// `Σ w[k]·t(k)` over the window, folded: `w[h]·t(h) + Σ_{k<h} w[k]·(t(k) + t(WIN−1−k))`
    /// (the windows are symmetric, bit for bit).
    #[inline(always)]
    fn apply(&self, t: impl Fn(usize) -> S) -> S {
        let (w, h) = (&self.0, WIN / 2);
        let mut acc = w[h].mul(t(h));
        for (k, wk) in w[..h].iter().enumerate() {
            acc = wk.mul_add(t(k).add(t(WIN - 1 - k)), acc);
        }
        acc
    }
}

/// The vertical pass of one map `p` (rows of `width`) for output rows `r0..r0 + nr`, every
/// column, into `out` (`STEP_ROWS` rows of `width`). `S::WIDTH` columns at a time; when the width
/// is not a multiple of it the last chunk overlaps the one before (and writes the same values).
#[inline(always)]
fn vertical<S: Lanes, const WIN: usize>(
    w: &Window<S, WIN>,
    p: &[f64],
    out: &mut [f64],
    width: usize,
    r0: usize,
    nr: usize,
) {
    // The loads below read rows `r0 .. r0 + nr + WIN − 1`, columns `c0 .. c0 + S::WIDTH` with
    // `c0 <= width − S::WIDTH`: inside `p` once this holds.
    assert!(width >= S::WIDTH && (r0 + nr + WIN - 1) * width <= p.len());
    let last = width - S::WIDTH;
    let mut c = 0;
    loop {
        let c0 = c.min(last);
        // SAFETY: `q < nr + WIN − 1` and `c0 <= last`, so `(r0 + q)·width + c0 + S::WIDTH <=
        // (r0 + nr + WIN − 1)·width <= p.len()` (asserted above).
        let at = |q: usize| unsafe { S::load_unchecked(p, (r0 + q) * width + c0) };
        if nr == STEP_ROWS {
            // Every image row loaded once for the four output rows.
            let mut col = [S::splat(0.0); STEP_ROWS + 10];
            for (q, v) in col[..STEP_ROWS + WIN - 1].iter_mut().enumerate() {
                *v = at(q);
            }
            for r in 0..STEP_ROWS {
                w.apply(|t| col[r + t]).store(out, r * width + c0);
            }
        } else {
            for r in 0..nr {
                w.apply(|t| at(r + t)).store(out, r * width + c0);
            }
        }
        if c0 == last {
            break;
        }
        c += S::WIDTH;
    }
}

/// The horizontal pass of the four vertical maps at kept columns `cols` (`S::WIDTH` at a time),
/// and their SSIM values added to `sum`.
#[inline(always)]
fn horizontal<S: Lanes, const WIN: usize>(
    w: &Window<S, WIN>,
    k: &Consts<S>,
    maps: [&[f64]; 4],
    cols: Range<usize>,
    mut sum: S,
) -> S {
    // The loads below read `c + t .. c + t + S::WIDTH` for `t < WIN` and `c + S::WIDTH <=
    // cols.end`: inside every map once this holds.
    assert!(
        cols.len().is_multiple_of(S::WIDTH) && maps.iter().all(|v| cols.end + WIN - 1 <= v.len())
    );
    let [vs, vd, vss, vdd] = maps;
    // Two vectors of output columns at a time: their taps overlap, so `WIN + S::WIDTH` loads
    // per map serve both.
    let mut c = cols.start;
    while c + 2 * S::WIDTH <= cols.end {
        // SAFETY: `c + 2·S::WIDTH <= cols.end`, so `c + q + S::WIDTH <= cols.end + WIN − 1 <=
        // v.len()` for every `q < WIN + S::WIDTH` (asserted above).
        let ([a0, a1], [b0, b1], [e0, e1], [f0, f1]) =
            unsafe { (taps2(w, vs, c), taps2(w, vd, c), taps2(w, vss, c), taps2(w, vdd, c)) };
        sum = sum.add(k.pixel([a0, b0, e0, f0])).add(k.pixel([a1, b1, e1, f1]));
        c += 2 * S::WIDTH;
    }
    for c in (c..cols.end).step_by(S::WIDTH) {
        // SAFETY: `c + t + S::WIDTH <= cols.end + WIN − 1 <= v.len()` (asserted above).
        let tap = |v: &[f64], t: usize| unsafe { S::load_unchecked(v, c + t) };
        let m = [
            w.apply(|t| tap(vs, t)),
            w.apply(|t| tap(vd, t)),
            w.apply(|t| tap(vss, t)),
            w.apply(|t| tap(vdd, t)),
        ];
        sum = sum.add(k.pixel(m));
    }
    sum
}

/// The window applied at columns `c` and `c + S::WIDTH` of `v`, from one load of each of the
/// `WIN + S::WIDTH` taps.
///
/// # Safety
///
/// `c + WIN − 1 + 2·S::WIDTH <= v.len()`.
#[inline(always)]
unsafe fn taps2<S: Lanes, const WIN: usize>(w: &Window<S, WIN>, v: &[f64], c: usize) -> [S; 2] {
    let mut t = [S::splat(0.0); 11 + 4];
    for (q, tq) in t[..WIN + S::WIDTH].iter_mut().enumerate() {
        // SAFETY: `c + q + S::WIDTH <= c + WIN − 1 + 2·S::WIDTH <= v.len()` (the contract).
        *tq = unsafe { S::load_unchecked(v, c + q) };
    }
    [w.apply(|k| t[k]), w.apply(|k| t[k + S::WIDTH])]
}

/// SSIM's constants in lanes.
struct Consts<S> {
    half: S,
    c1: S,
    c2: S,
    half_cov: S,
}

impl<S: Lanes> Consts<S> {
    #[inline(always)]
    fn new(cov_norm: f64) -> Self {
        Consts {
            half: S::splat(0.5),
            c1: S::splat(K1 * K1),
            c2: S::splat(K2 * K2),
            half_cov: S::splat(0.5 * cov_norm),
        }
    }

    /// SSIM from the filtered `[μs, μd, E s², E d²]`: `(2μxμy + C1)(2σxy + C2) / ((μx² + μy² +
    /// C1)(σx² + σy² + C2))`, the (co)variances scaled by `cov_norm`.
    #[inline(always)]
    fn pixel(&self, [ms, md, ess, edd]: [S; 4]) -> S {
        let (ms2, md2) = (ms.mul(ms), md.mul(md));
        let (vs, vd) = (ess.sub(ms2), edd.sub(md2));
        let a1 = self.half.mul_add(ms2.sub(md2), self.c1);
        let b1 = self.half.mul_add(ms2.add(md2), self.c1);
        let a2 = self.half_cov.mul_add(vs.sub(vd), self.c2);
        let b2 = self.half_cov.mul_add(vs.add(vd), self.c2);
        a1.mul(a2).div(b1.mul(b2))
    }
}

/// [`ssim`] of many pairs of `width × height` gray images, in parallel over pairs (each pair
/// serial).
pub fn ssim_many(
    pairs: &[(&[f64], &[f64])],
    width: usize,
    height: usize,
    variant: SsimVariant,
) -> Result<Vec<f64>, SsimError> {
    pairs.par_iter().map(|(x, y)| ssim(x, y, width, height, variant)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, pixel by pixel: the five moments over the full 2-D window, no folding.
    fn naive(x: &[f64], y: &[f64], width: usize, height: usize, variant: SsimVariant) -> f64 {
        let (w, cov_norm) = variant.window();
        let win = w.len();
        let mut total = 0.0;
        for r in 0..=height - win {
            for c in 0..=width - win {
                let mut m = [0.0; 5];
                for (i, wi) in w.iter().enumerate() {
                    for (j, wj) in w.iter().enumerate() {
                        let (a, b) = (x[(r + i) * width + c + j], y[(r + i) * width + c + j]);
                        for (mk, v) in m.iter_mut().zip([a, b, a * a, b * b, a * b]) {
                            *mk += wi * wj * v;
                        }
                    }
                }
                let [mx, my, mxx, myy, mxy] = m;
                let (vx, vy) = (cov_norm * (mxx - mx * mx), cov_norm * (myy - my * my));
                let vxy = cov_norm * (mxy - mx * my);
                let (c1, c2) = (K1 * K1, K2 * K2);
                total += (2.0 * mx * my + c1) * (2.0 * vxy + c2)
                    / ((mx * mx + my * my + c1) * (vx + vy + c2));
            }
        }
        total / ((width + 1 - win) * (height + 1 - win)) as f64
    }

    /// A deterministic textured pair of `width × height` images in [0, 1].
    fn pair(width: usize, height: usize) -> (Vec<f64>, Vec<f64>) {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let x: Vec<f64> = (0..width * height)
            .map(|i| 0.5 + 0.3 * ((i % width) as f64 * 0.3).sin() + 0.2 * (next() - 0.5))
            .collect();
        let y = x.iter().map(|v| (0.8 * v + 0.1 + 0.1 * next()).min(1.0)).collect();
        (x, y)
    }

    /// [`ssim`] with the portable lanes forced (what a machine without AVX2 + FMA runs).
    fn ssim_portable(x: &[f64], y: &[f64], width: usize, height: usize, v: SsimVariant) -> f64 {
        let (w, cov_norm) = prepare(x, y, width, height, v).expect("shape");
        let (ch, cw) = (height + 1 - w.len(), width + 1 - w.len());
        let mut scratch = Scratch::default();
        let total: f64 = (0..ch.div_ceil(BAND_ROWS))
            .map(|b| {
                band_sum_with::<Portable>(x, y, width, &w, cov_norm, band(b, ch), &mut scratch)
            })
            .sum();
        total / (cw * ch) as f64
    }

    #[test]
    fn kernel_matches_the_definition_on_every_shape() {
        // Widths and heights around the lane width, the band and the step, both windows.
        for (width, height) in [(11, 11), (12, 13), (14, 40), (15, 11), (37, 45), (64, 71), (7, 9)]
        {
            let (x, y) = pair(width, height);
            for v in [SsimVariant::Gaussian, SsimVariant::Uniform7] {
                if width < v.win_size() || height < v.win_size() {
                    continue;
                }
                let want = naive(&x, &y, width, height, v);
                let got = ssim(&x, &y, width, height, v).expect("ssim");
                let par = ssim_par(&x, &y, width, height, v).expect("ssim");
                let portable = ssim_portable(&x, &y, width, height, v);
                assert!((got - want).abs() < 1e-13, "{width}×{height} {v:?}: {got} vs {want}");
                assert!((portable - want).abs() < 1e-13, "{width}×{height} {v:?}: {portable}");
                assert_eq!(got.to_bits(), par.to_bits(), "{width}×{height} {v:?}");
            }
        }
    }

    #[test]
    fn gaussian_window_is_scipys() {
        let k = gaussian_kernel(1.5, 3.5);
        assert_eq!(k.len(), 11);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!(k[5] > k[4]);
        // The kernel folds the taps: both windows must be symmetric bit for bit.
        for v in [SsimVariant::Gaussian, SsimVariant::Uniform7] {
            let (w, _) = v.window();
            assert!(w.iter().zip(w.iter().rev()).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        assert_eq!(SsimVariant::Uniform7.win_size(), 7);
    }

    #[test]
    fn identical_images_score_one_and_small_images_fail() {
        let img: Vec<f64> = (0..100).map(|i| ((i * 37) % 23) as f64 / 22.0).collect();
        for v in [SsimVariant::Gaussian, SsimVariant::Uniform7] {
            let s = ssim(&img, &img, 10, 10, v);
            if v == SsimVariant::Gaussian {
                assert!(matches!(s, Err(SsimError::TooSmall { win_size: 11, .. })));
            } else {
                assert!((s.expect("ssim") - 1.0).abs() < 1e-12);
            }
        }
        let inverted: Vec<f64> = img.iter().map(|v| 1.0 - v).collect();
        let s = ssim(&img, &inverted, 10, 10, SsimVariant::Uniform7).expect("ssim");
        assert!(s < 0.0, "{s}");
        assert!(matches!(
            ssim(&img, &img[..50], 10, 10, SsimVariant::Uniform7),
            Err(SsimError::Shape(_))
        ));
    }
}
