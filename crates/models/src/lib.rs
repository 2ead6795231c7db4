//! Brain2Word models on LibTorch (through `tch`; CUDA when present): the networks of Affolter et
//! al. 2020 — Base, ROI (one dense block per ROI, run as one batched matmul) and Autoencoder —
//! their losses, a cross-validated training loop with early stopping on training-side
//! validation scans, mean regularisation, and the ridge baseline.
//!
//! Stages: `models.train` ([`Train`]), `models.predict` ([`Predict`]), `models.ridge`
//! ([`Ridge`]). Tables they write are defined in `brainpipe-eval` (`predictions/1`,
//! `training/1`), which scores them without LibTorch.
//!
//! ```
//! use brainpipe_models::losses::regression_loss;
//! use tch::{Device, Kind, Tensor};
//!
//! let t = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
//! // Perfect predictions: −cos(t_i, p_i) = −1, the negative is orthogonal: loss −1.
//! let loss = regression_loss(&t, &t).double_value(&[]);
//! assert!((loss + 1.0).abs() < 1e-6);
//! # let _ = (Device::Cpu, Kind::Float);
//! ```

use std::sync::Arc;

mod augmented;
pub mod cv;
mod data;
mod error;
pub mod losses;
pub mod net;
mod predict;
mod ridge;
pub mod schedule;
pub mod select;
mod train;
pub mod train_shards;

pub use augmented::{Augmented, read_augmented};
pub use data::{Dataset, read_roi_blocks};
pub use error::{ModelsError, Result};
pub use predict::{Predict, PredictParams, predict_dir};
pub use ridge::{Ridge, RidgeParams};
pub use train::{
    MODEL_SCHEMA, PRETRAIN_EPOCHS, Train, TrainOutputs, TrainParams, TrainSummary, net_config,
    read_fold_config, train_all, train_augmented,
};

/// Every stage of this crate, for the LibTorch worker's registry.
pub fn stages() -> Vec<Arc<dyn brainpipe_core::DynStage>> {
    vec![Arc::new(Train), Arc::new(Predict), Arc::new(Ridge)]
}
