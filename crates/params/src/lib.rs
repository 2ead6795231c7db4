//! The params of brainpipe's LibTorch stages, declared without LibTorch.
//!
//! The stages themselves run in the `brainpipe-torch` worker; the driver links this crate so that
//! `brainpipe plan` checks every stage's params — types, enum values, ranges and combinations —
//! without starting the worker. The stage crates (`brainpipe-clip`, `brainpipe-models`) use these
//! types as their `Stage::Params`, so the worker parses and validates exactly the same way.
//!
//! ```
//! let canonical = brainpipe_params::canonical("models.train").expect("declared");
//! let err = canonical(&serde_json::json!({"select": "roi_stabilty"})).unwrap_err();
//! assert!(err.starts_with("`select`: unknown variant `roi_stabilty`"), "{err}");
//! let err = canonical(&serde_json::json!({"select": "roi_stability"})).unwrap_err();
//! assert!(err.contains("`select_columns`"), "{err}");
//! ```

use brainpipe_core::canonical_params;
use serde_json::Value;

pub mod clip;
pub mod diffusion;
pub mod models;

/// Turns a stage's `with:` into its canonical params, or a one-line error naming the param.
pub type Canonical = fn(&Value) -> Result<Value, String>;

/// The worker stages whose params are declared here, with their canonicaliser.
pub const DECLARED: [(&str, Canonical); 11] = [
    ("clip.embed", canonical_params::<clip::EmbedParams>),
    ("clip.extract", canonical_params::<clip::ExtractParams>),
    ("clip.pixel_metrics", canonical_params::<clip::PixelMetricsParams>),
    ("clip.select_captions", canonical_params::<clip::SelectParams>),
    ("clip.augment", canonical_params::<clip::AugmentParams>),
    ("clip.train", canonical_params::<clip::TrainParams>),
    ("models.train", canonical_params::<models::TrainParams>),
    ("models.ridge", canonical_params::<models::RidgeParams>),
    ("models.predict", canonical_params::<models::PredictParams>),
    ("diffusion.train", canonical_params::<diffusion::TrainParams>),
    ("diffusion.decode", canonical_params::<diffusion::DecodeParams>),
];

/// The canonicaliser of worker stage `stage`, if its params are declared here.
pub fn canonical(stage: &str) -> Option<Canonical> {
    DECLARED.iter().find(|(name, _)| *name == stage).map(|(_, f)| *f)
}

/// `Ok` when `value` lies in `[low, high]` (and is a number), else a message naming `name`.
pub(crate) fn in_range(name: &str, value: f64, low: f64, high: f64) -> Result<(), String> {
    if value.is_finite() && (low..=high).contains(&value) {
        Ok(())
    } else {
        Err(format!("`{name}` must be in [{low}, {high}], got {value}"))
    }
}

/// `Ok` when `value` is at least `low`, else a message naming `name`.
pub(crate) fn at_least(name: &str, value: usize, low: usize) -> Result<(), String> {
    if value >= low { Ok(()) } else { Err(format!("`{name}` must be at least {low}, got {value}")) }
}

/// `Ok` when a `threads` param is 0 (the worker's share of the cores) or a positive count.
pub(crate) fn threads(value: i32) -> Result<(), String> {
    if value >= 0 {
        Ok(())
    } else {
        Err(format!("`threads` must be 0 (the worker's share) or a positive count, got {value}"))
    }
}
