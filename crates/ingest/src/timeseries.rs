//! BOLD time series: each trial's beta pattern convolved with the canonical HRF, plus drift and
//! white noise, sampled every TR — the raw data the single-trial GLM stage recovers betas from.

use rand::Rng;

use crate::error::Result;
use crate::rng::{fill_normal, normal, stream};
use brainpipe_nifti::NiftiWriter;

/// Stimulus duration in seconds (Pereira et al. showed each stimulus for about 3 s).
pub(crate) const TRIAL_DURATION_S: f64 = 3.0;
/// Inter-trial interval: uniform in this range (s), jittered so single-trial betas are estimable.
pub(crate) const ITI_RANGE_S: (f64, f64) = (3.0, 5.0);
/// Silence before the first and after the last trial (s), so the HRF settles.
pub(crate) const LEAD_S: f64 = 8.0;
pub(crate) const TAIL_S: f64 = 24.0;
/// Signal baseline, in noise units (raw BOLD is far from zero).
pub(crate) const BASELINE: f32 = 100.0;
/// Drift amplitude (linear + slow cosine) and temporal white-noise sd, in noise units.
pub(crate) const DRIFT_SD: f64 = 1.0;
pub(crate) const TEMPORAL_NOISE_SD: f32 = 0.5;
/// HRF support in seconds.
const HRF_LENGTH_S: f64 = 32.0;
const HRF_STEP_S: f64 = 0.1;

/// SPM's canonical double-gamma HRF: Γ(6) peak minus a Γ(16) undershoot at 1/6.
pub(crate) fn canonical_hrf(t: f64) -> f64 {
    if t <= 0.0 {
        return 0.0;
    }
    let gamma_pdf = |shape: f64, gamma: f64| t.powf(shape - 1.0) * (-t).exp() / gamma;
    gamma_pdf(6.0, 120.0) - gamma_pdf(16.0, 1_307_674_368_000.0) / 6.0
}

/// The boxcar of one trial convolved with the HRF, normalised so a sustained response peaks
/// near 1: the response `TRIAL_DURATION_S` of stimulation adds at time `t` after onset.
fn trial_response(t: f64) -> f64 {
    let steps = (TRIAL_DURATION_S / HRF_STEP_S) as usize;
    let peak = (0..(HRF_LENGTH_S / HRF_STEP_S) as usize)
        .map(|i| canonical_hrf(i as f64 * HRF_STEP_S))
        .fold(0.0, f64::max);
    (0..steps).map(|i| canonical_hrf(t - i as f64 * HRF_STEP_S)).sum::<f64>() * HRF_STEP_S
        / (peak * TRIAL_DURATION_S)
}

/// A run's timing: onset per trial and the number of volumes.
pub(crate) struct Schedule {
    pub onsets: Vec<f64>,
    pub volumes: usize,
}

pub(crate) fn schedule(seed: u64, subject: u64, run: u64, trials: usize, tr_s: f64) -> Schedule {
    let mut rng = stream(seed, "schedule", subject, run);
    let mut t = LEAD_S;
    let onsets = (0..trials)
        .map(|_| {
            let onset = t;
            t += TRIAL_DURATION_S + rng.gen_range(ITI_RANGE_S.0..=ITI_RANGE_S.1);
            (onset / 0.1).round() * 0.1
        })
        .collect::<Vec<_>>();
    let end = onsets.last().copied().unwrap_or(0.0) + TAIL_S;
    Schedule { onsets, volumes: (end / tr_s).ceil() as usize }
}

/// Writes one run: `betas[i]` (brain voxels) is trial `i`'s pattern, placed at `onsets[i]`.
#[expect(clippy::too_many_arguments, reason = "one call site; a struct would only rename them")]
pub(crate) fn write_run(
    writer: &mut NiftiWriter<f32>,
    betas: &[Vec<f32>],
    schedule: &Schedule,
    brain: &[usize],
    grid_len: usize,
    tr_s: f64,
    seed: u64,
    stream_ids: (u64, u64),
) -> Result<()> {
    let (subject, run) = stream_ids;
    let n = brain.len();
    let mut drift_rng = stream(seed, "drift", subject, run);
    let linear: Vec<f32> = (0..n).map(|_| (DRIFT_SD * normal(&mut drift_rng)) as f32).collect();
    let slow: Vec<f32> = (0..n).map(|_| (DRIFT_SD * normal(&mut drift_rng)) as f32).collect();
    let total = schedule.volumes as f64;
    let mut noise = vec![0.0f32; n];
    for k in 0..schedule.volumes {
        let t = k as f64 * tr_s;
        let mut values = vec![BASELINE; n];
        for (beta, &onset) in betas.iter().zip(&schedule.onsets) {
            if t > onset && t < onset + HRF_LENGTH_S + TRIAL_DURATION_S {
                let h = trial_response(t - onset) as f32;
                values.iter_mut().zip(beta).for_each(|(v, b)| *v += h * b);
            }
        }
        let phase = k as f64 / total;
        let (lin, cos) = ((phase - 0.5) as f32, (std::f64::consts::PI * phase).cos() as f32);
        fill_normal(
            &mut stream(seed, "temporal-noise", subject, (run << 32) | k as u64),
            &mut noise,
        );
        let mut volume = vec![0.0f32; grid_len];
        for (i, &g) in brain.iter().enumerate() {
            volume[g] = values[i] + lin * linear[i] + cos * slow[i] + TEMPORAL_NOISE_SD * noise[i];
        }
        writer.write_volume(&volume)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrf_peaks_near_five_seconds_and_undershoots() {
        let peak = (0..300)
            .map(|i| i as f64 * 0.1)
            .max_by(|a, b| canonical_hrf(*a).total_cmp(&canonical_hrf(*b)));
        assert!(matches!(peak, Some(p) if (4.5..5.5).contains(&p)), "{peak:?}");
        assert!(canonical_hrf(15.0) < 0.0);
        let r = (0..200).map(|i| trial_response(i as f64 * 0.1)).fold(0.0, f64::max);
        assert!((0.5..1.01).contains(&r), "{r}");
    }

    #[test]
    fn schedule_is_jittered_and_covers_every_trial() {
        let s = schedule(1, 0, 0, 10, 2.0);
        assert_eq!(s.onsets.len(), 10);
        assert!(
            s.onsets.windows(2).all(|w| w[1] - w[0] >= TRIAL_DURATION_S + ITI_RANGE_S.0 - 0.11)
        );
        assert!(s.volumes as f64 * 2.0 >= s.onsets[9] + TAIL_S);
    }
}
