//! Named, independent random streams, so output bytes never depend on thread scheduling.
//!
//! Every stream is a ChaCha8 generator keyed by (seed, purpose, a, b) — e.g.
//! (seed, "noise", subject, trial) — so subjects and trials can be generated in any order, on any
//! number of threads, and give the same numbers.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The stream for `purpose` and indices `a`, `b` (use 0 where unused).
pub(crate) fn stream(seed: u64, purpose: &str, a: u64, b: u64) -> ChaCha8Rng {
    // FNV-1a of the purpose: stable across platforms and Rust versions (unlike `Hash`).
    let mut tag: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in purpose.bytes() {
        tag = (tag ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut state = seed ^ tag.rotate_left(17);
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_mut(8).enumerate() {
        let mix = match i {
            0 => tag,
            1 => a,
            2 => b,
            _ => 0x5EED,
        };
        state ^= mix;
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// Fills `out` with independent standard normal draws (Box–Muller on 24-bit uniforms).
pub(crate) fn fill_normal(rng: &mut ChaCha8Rng, out: &mut [f32]) {
    const SCALE: f32 = 1.0 / (1u32 << 24) as f32;
    for pair in out.chunks_mut(2) {
        let bits: u64 = rng.r#gen();
        // (0, 1] for the logarithm, [0, 1) for the angle.
        let u1 = ((bits >> 40) as u32 + 1) as f32 * SCALE;
        let u2 = ((bits & 0xFF_FFFF) as u32) as f32 * SCALE;
        let radius = (-2.0 * u1.ln()).sqrt();
        let (sin, cos) = (std::f32::consts::TAU * u2).sin_cos();
        pair[0] = radius * cos;
        if let Some(second) = pair.get_mut(1) {
            *second = radius * sin;
        }
    }
}

/// One standard normal draw.
pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let mut v = [0.0f32; 1];
    fill_normal(rng, &mut v);
    f64::from(v[0])
}

/// A Fisher–Yates shuffle with `rng` (own code so the order never changes with a rand upgrade).
pub(crate) fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = rng.gen_range(0..=i);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let draw = |p: &str, a, b| stream(7, p, a, b).r#gen::<u64>();
        assert_eq!(draw("noise", 1, 2), draw("noise", 1, 2));
        assert_ne!(draw("noise", 1, 2), draw("noise", 2, 1));
        assert_ne!(draw("noise", 1, 2), draw("encoding", 1, 2));
        assert_ne!(stream(7, "x", 0, 0).r#gen::<u64>(), stream(8, "x", 0, 0).r#gen::<u64>());
    }

    #[test]
    fn normals_have_unit_variance() {
        let mut v = vec![0.0f32; 20_001];
        fill_normal(&mut stream(1, "t", 0, 0), &mut v);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    }
}
