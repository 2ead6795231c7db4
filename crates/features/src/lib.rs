//! From `scans` to model-ready features: ROI grouping, per-voxel normalisation, voxel selection and
//! Brain2Word's template padding.
//!
//! - [`RoiFeatures`] (`features.roi`) assigns every voxel an ROI — from an atlas label volume
//!   resampled nearest-neighbour through the affines as nilearn does, or from the ROI column the
//!   importer recorded (Pereira's Gordon columns) — groups the columns by ROI in atlas order,
//!   z-scores each voxel within the subject or each run, drops voxels with NaN or zero variance
//!   (counted in the manifest), and optionally keeps the most stable voxels (Pereira et al. 2018),
//!   judged on training trials only.
//! - [`TemplatePad`] (`features.template_pad`) lays every subject's ROIs into one fixed template
//!   (per ROI the largest subject's slice counts, or Brain2Word's `sizes.npy` + `last_dim.npz`:
//!   65,730 positions for the Gordon atlas), filling missing positions with the mean of the
//!   subject's ROI voxels in the same z-slice, per trial ([`template`] module docs).
//!
//! ```
//! use brainpipe_features::{Fill, RoiTemplate, Template};
//!
//! // one ROI with two z-slices of 2 and 3 positions; a subject with 2 voxels, both in slice 4
//! let template = Template { rois: vec![RoiTemplate { roi: 1, slices: vec![(3, 2), (4, 3)] }] };
//! let layout = template.layout(&[(1, 4), (1, 4)], Fill::SliceMean).expect("fits");
//! let mut row = vec![0.0; template.width()];
//! layout.apply(&[1.0, 3.0], &mut row, &mut Vec::new());
//! // slice 3 is missing: the ROI mean; slice 4: its voxels, then their mean
//! assert_eq!(row, vec![2.0, 2.0, 1.0, 3.0, 2.0]);
//! ```

mod error;
mod normalise;
mod npy;
mod pad;
mod roi;
mod select;
pub mod template;

use std::sync::Arc;

use brainpipe_core::DynStage;

pub use error::{FeaturesError, Result};
pub use normalise::Normalise;
pub use npy::{NpyArray, read_npy, read_npz};
pub use pad::{TemplatePad, TemplatePadParams};
pub use roi::{
    Atlas, Outside, PEREIRA_SELECTED_VOXELS, RoiFeatures, RoiParams, RoiSource, Selection,
};
pub use template::{Fill, Layout, RoiTemplate, Template};

/// Width of Brain2Word's input: the 333 Gordon ROI template sizes summed (Affolter et al. 2020).
pub const BRAIN2WORD_WIDTH: usize = 65_730;

/// Every stage of this crate, for the CLI and pipelines to register.
pub fn stages() -> Vec<Arc<dyn DynStage>> {
    vec![Arc::new(RoiFeatures), Arc::new(TemplatePad)]
}
