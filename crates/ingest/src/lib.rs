//! Ingestion of fMRI studies into brainpipe. So far: `ingest.synthetic`, the generated study that
//! `make demo` runs on.
//!
//! No real fMRI, CLIP or diffusion weights reach our machines, so the demo world is generated from
//! real ingredients — the 180 Pereira et al. (2018) concepts with real GloVe vectors, the real
//! MNI152 brain mask, parcels sized like the Gordon (2016) atlas — with a known generative model:
//! a shared linear encoding of the stimulus in some ROIs, a subject-specific deviation, spatially
//! smooth and white noise. Because the model is known, `study.json` records the **oracle ceiling**:
//! how well a decoder that knows the true encoding does. See `docs/SYNTHETIC.md`.
//!
//! ```
//! use std::collections::BTreeMap;
//! use brainpipe_ingest::Synthetic;
//!
//! let dir = tempfile::tempdir()?;
//! let out = dir.path().join("study");
//! let params = serde_json::json!({"subjects": 2, "resolution_mm": 12, "rois": 30});
//! let manifest = brainpipe_core::run_standalone(&Synthetic, &BTreeMap::new(), &params, &out, &BTreeMap::new())?;
//! assert!(out.join("bold/sub-02_bold.nii.gz").is_file());
//! assert!(manifest.notes["oracle_top1"].as_f64().is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bold5000;
mod brain;
mod error;
mod events;
mod images;
mod model;
mod nifti;
mod noise;
mod params;
mod pereira;
mod rng;
mod rois;
mod row_groups;
mod scans;
mod study;
mod subject_shards;
mod timeseries;
mod vectors;

use std::sync::Arc;

use brainpipe_core::DynStage;

pub use bold5000::{Bold5000Params, IngestBold5000};
pub use error::{IngestError, Result};
pub use events::{Event, read_events};
pub use params::{EncodingKind, SyntheticParams, World};
pub use pereira::{IngestPereira, PereiraParams};
pub use scans::{IngestNifti, NiftiParams, ScansWriter, TrialInfo, VoxelGrid};
pub use study::{PEREIRA_PARADIGMS, Synthetic};

/// Every stage of this crate, for the CLI and pipelines to register.
pub fn stages() -> Vec<Arc<dyn DynStage>> {
    vec![
        Arc::new(Synthetic),
        Arc::new(IngestNifti),
        Arc::new(IngestPereira),
        Arc::new(IngestBold5000),
    ]
}
