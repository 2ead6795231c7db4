//! PixCorr: the Pearson correlation of two images' flattened RGB values (MindEye's
//! `np.corrcoef(images_flat[i], recons_flat[i])[0][1]` after resizing both to 425 × 425).

/// Pearson r of `a` and `b` (same length) as `np.corrcoef(a, b)[0, 1]`: `f64` sums of the centred
/// values, clipped to `[-1, 1]`; NaN when either is constant (numpy warns and returns NaN too).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "pearson of slices of different lengths");
    let n = a.len() as f64;
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x - ma, y - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    (sab / (saa.sqrt() * sbb.sqrt())).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_basics() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.5]) - 0.9979487157886733).abs() < 1e-15);
        assert!((pearson(&[1.0, 2.0], &[2.0, 1.0]) + 1.0).abs() < 1e-15);
        assert!(pearson(&[0.5; 4], &[1.0, 2.0, 3.0, 4.0]).is_nan());
    }
}
