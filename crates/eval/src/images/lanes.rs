//! Four `f64` lanes for the SSIM kernel ([`super::ssim`]): one AVX2 register where the CPU has
//! AVX2 and FMA (checked at run time — the workspace builds for baseline x86-64, so the compiler
//! alone would use 2-lane SSE2 without FMA), a plain array elsewhere, and a one-lane type for the
//! columns left over. The kernel is written once, generic over [`Lanes`].
//!
//! Why explicit lanes (measured at 425² on the 2-core build machine, docs/BENCHMARKS.md): the
//! best phrasing of the kernel for the auto-vectoriser ran as fast as these lanes did before the
//! last refinements (3.26 against 3.21 ms of CPU per pair), but nearby phrasings of the same loops
//! ran 5–10.7 ms (LLVM spilled the accumulators or vectorised across the wrong axis), and the
//! refinements (unchecked loads, two output vectors per load of the taps) need the control.

/// `WIDTH` `f64` lanes and the arithmetic the SSIM kernel needs.
pub(super) trait Lanes: Copy {
    /// How many `f64` one value holds.
    const WIDTH: usize;
    /// Every lane `v`.
    fn splat(v: f64) -> Self;
    /// `s[at..at + WIDTH]` (bounds-checked).
    fn load(s: &[f64], at: usize) -> Self;
    /// `s[at..at + WIDTH]`, the bounds check left to the caller (checked here unless overridden).
    ///
    /// # Safety
    ///
    /// `at + Self::WIDTH <= s.len()`.
    #[inline(always)]
    unsafe fn load_unchecked(s: &[f64], at: usize) -> Self {
        Self::load(s, at)
    }
    /// Into `s[at..at + WIDTH]` (bounds-checked).
    fn store(self, s: &mut [f64], at: usize);
    /// Lane-wise `+`.
    fn add(self, o: Self) -> Self;
    /// Lane-wise `−`.
    fn sub(self, o: Self) -> Self;
    /// Lane-wise `×`.
    fn mul(self, o: Self) -> Self;
    /// Lane-wise `÷`.
    fn div(self, o: Self) -> Self;
    /// `self · b + c` (fused, one rounding, for [`Avx`]).
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// Lane `j`.
    fn lane(self, j: usize) -> f64;
}

/// One lane: the columns a vector does not fill.
#[derive(Clone, Copy)]
pub(super) struct One(pub(super) f64);

impl Lanes for One {
    const WIDTH: usize = 1;
    #[inline(always)]
    fn splat(v: f64) -> Self {
        One(v)
    }
    #[inline(always)]
    fn load(s: &[f64], at: usize) -> Self {
        One(s[at])
    }
    #[inline(always)]
    fn store(self, s: &mut [f64], at: usize) {
        s[at] = self.0;
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        One(self.0 + o.0)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        One(self.0 - o.0)
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        One(self.0 * o.0)
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        One(self.0 / o.0)
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        One(self.0 * b.0 + c.0)
    }
    #[inline(always)]
    fn lane(self, _: usize) -> f64 {
        self.0
    }
}

/// Four lanes as a plain array (machines without AVX2 + FMA; the compiler vectorises what its
/// target allows).
#[derive(Clone, Copy)]
pub(super) struct Portable([f64; 4]);

impl Portable {
    #[inline(always)]
    fn zip(self, o: Self, f: impl Fn(f64, f64) -> f64) -> Self {
        Portable([
            f(self.0[0], o.0[0]),
            f(self.0[1], o.0[1]),
            f(self.0[2], o.0[2]),
            f(self.0[3], o.0[3]),
        ])
    }
}

impl Lanes for Portable {
    const WIDTH: usize = 4;
    #[inline(always)]
    fn splat(v: f64) -> Self {
        Portable([v; 4])
    }
    #[inline(always)]
    fn load(s: &[f64], at: usize) -> Self {
        let s = &s[at..at + 4];
        Portable([s[0], s[1], s[2], s[3]])
    }
    #[inline(always)]
    fn store(self, s: &mut [f64], at: usize) {
        s[at..at + 4].copy_from_slice(&self.0);
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.zip(o, |a, b| a + b)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.zip(o, |a, b| a - b)
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self.zip(o, |a, b| a * b)
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        self.zip(o, |a, b| a / b)
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        self.mul(b).add(c)
    }
    #[inline(always)]
    fn lane(self, j: usize) -> f64 {
        self.0[j]
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use avx::Avx;

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::{
        __m256d, _mm256_add_pd, _mm256_div_pd, _mm256_fmadd_pd, _mm256_loadu_pd, _mm256_mul_pd,
        _mm256_set1_pd, _mm256_storeu_pd, _mm256_sub_pd,
    };

    use super::Lanes;

    /// One AVX2 register of four `f64`.
    ///
    /// Invariant: an `Avx` is only made and used by code that runs after
    /// `is_x86_feature_detected!("avx2")` and `("fma")` returned true (the SSIM kernel
    /// instantiates it only inside a `#[target_feature(enable = "avx2,fma")]` function that is
    /// called after that check), which is what makes the intrinsics below sound to call. The
    /// methods are `#[inline(always)]` so that the intrinsics inline into that function.
    #[derive(Clone, Copy)]
    pub(in super::super) struct Avx(__m256d);

    impl Lanes for Avx {
        const WIDTH: usize = 4;
        #[inline(always)]
        fn splat(v: f64) -> Self {
            // SAFETY: AVX is available (the type's invariant).
            Avx(unsafe { _mm256_set1_pd(v) })
        }
        #[inline(always)]
        fn load(s: &[f64], at: usize) -> Self {
            let s = &s[at..at + 4];
            // SAFETY: AVX is available; `s` holds the four values read.
            Avx(unsafe { _mm256_loadu_pd(s.as_ptr()) })
        }
        #[inline(always)]
        unsafe fn load_unchecked(s: &[f64], at: usize) -> Self {
            debug_assert!(at + 4 <= s.len());
            // SAFETY: AVX is available; the caller guarantees `s[at..at + 4]` exists.
            Avx(unsafe { _mm256_loadu_pd(s.as_ptr().add(at)) })
        }
        #[inline(always)]
        fn store(self, s: &mut [f64], at: usize) {
            let s = &mut s[at..at + 4];
            // SAFETY: AVX is available; `s` holds the four values written.
            unsafe { _mm256_storeu_pd(s.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            // SAFETY: AVX is available (the type's invariant).
            Avx(unsafe { _mm256_add_pd(self.0, o.0) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            // SAFETY: AVX is available (the type's invariant).
            Avx(unsafe { _mm256_sub_pd(self.0, o.0) })
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            // SAFETY: AVX is available (the type's invariant).
            Avx(unsafe { _mm256_mul_pd(self.0, o.0) })
        }
        #[inline(always)]
        fn div(self, o: Self) -> Self {
            // SAFETY: AVX is available (the type's invariant).
            Avx(unsafe { _mm256_div_pd(self.0, o.0) })
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            // SAFETY: FMA is available (the type's invariant).
            Avx(unsafe { _mm256_fmadd_pd(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn lane(self, j: usize) -> f64 {
            let mut out = [0.0; 4];
            // SAFETY: AVX is available; `out` holds four values.
            unsafe { _mm256_storeu_pd(out.as_mut_ptr(), self.0) };
            out[j]
        }
    }
}
