//! Brain2CLIP's training schedules (the seed's three variations) as a list of phases.
//!
//! 1. `pretrain_then_regression`: the autoencoder learns to reconstruct its input (every layer,
//!    reconstruction loss only); then the regression layers alone learn the targets, the encoder
//!    frozen (its weights and batch-normalisation statistics stay bit-identical: it runs in
//!    evaluation mode and gets no gradient).
//! 2. `pretrain_then_joint`: the same pretraining, then reconstruction + task loss together, every
//!    layer trained.
//! 3. `joint` (the default, and Brain2Word's training): no pretraining; one phase with every loss.
//!
//! Each phase has its own epoch budget, learning-rate schedule (restarted), optimizer state and
//! early stopping on the fold's validation scans (drawn from the training subjects only): the
//! pretraining phase watches the validation reconstruction loss, the others the task loss.

use crate::error::{ModelsError, Result};
use crate::net::ModelKind;

pub use brainpipe_params::models::Schedule;

/// The phases of `schedule` with their epoch budgets: `pretrain_epochs` for pretraining, `epochs`
/// for the phase after it (or the only phase). Refused for networks without a decoder.
pub fn phases(
    schedule: Schedule,
    model: ModelKind,
    pretrain_epochs: u32,
    epochs: u32,
) -> Result<Vec<Plan>> {
    if schedule != Schedule::Joint && model != ModelKind::Autoencoder {
        return Err(ModelsError::Params(format!(
            "schedule {} pretrains on reconstruction: it needs model autoencoder, not {}",
            schedule.name(),
            model.name()
        )));
    }
    let plan = |phase, epochs| Plan { phase, epochs };
    Ok(match schedule {
        Schedule::Joint => vec![plan(Phase::Joint, epochs)],
        Schedule::PretrainThenRegression => {
            vec![plan(Phase::Pretrain, pretrain_epochs), plan(Phase::Regression, epochs)]
        }
        Schedule::PretrainThenJoint => {
            vec![plan(Phase::Pretrain, pretrain_epochs), plan(Phase::Joint, epochs)]
        }
    })
}

/// One phase of a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reconstruction only, every layer.
    Pretrain,
    /// Task loss only, the encoder frozen.
    Regression,
    /// Task loss + reconstruction (when the network has a decoder), every layer.
    Joint,
}

impl Phase {
    /// The name in `training.parquet`'s `phase` column.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Pretrain => "pretrain",
            Phase::Regression => "regression",
            Phase::Joint => "joint",
        }
    }

    /// Whether the task losses (regression, classification) are trained.
    pub fn trains_task(self) -> bool {
        self != Phase::Pretrain
    }

    /// Whether the reconstruction loss is trained.
    pub fn trains_reconstruction(self) -> bool {
        self != Phase::Regression
    }

    /// Whether the encoder (`encoder.*`) is frozen: no gradient, evaluation mode.
    pub fn freezes_encoder(self) -> bool {
        self == Phase::Regression
    }

    /// Whether early stopping watches the reconstruction loss (else the task loss).
    pub fn monitors_reconstruction(self) -> bool {
        self == Phase::Pretrain
    }
}

/// A phase and its epoch budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The phase.
    pub phase: Phase,
    /// Most epochs (early stopping may end it sooner).
    pub epochs: u32,
}

/// Variable-name prefix of the encoder (what `pretrain_then_regression` freezes).
pub const ENCODER_PREFIX: &str = "encoder.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_list_their_phases() {
        let v1 =
            phases(Schedule::PretrainThenRegression, ModelKind::Autoencoder, 5, 9).expect("phases");
        assert_eq!(
            v1,
            vec![
                Plan { phase: Phase::Pretrain, epochs: 5 },
                Plan { phase: Phase::Regression, epochs: 9 }
            ]
        );
        assert!(v1[1].phase.freezes_encoder() && !v1[1].phase.trains_reconstruction());
        assert!(!v1[0].phase.trains_task() && v1[0].phase.monitors_reconstruction());
        let v2 = phases(Schedule::PretrainThenJoint, ModelKind::Autoencoder, 5, 9).expect("phases");
        assert_eq!(v2[1].phase, Phase::Joint);
        assert!(!v2[1].phase.freezes_encoder());
        let v3 = phases(Schedule::Joint, ModelKind::Base, 5, 9).expect("phases");
        assert_eq!(v3, vec![Plan { phase: Phase::Joint, epochs: 9 }]);
        let err = phases(Schedule::PretrainThenJoint, ModelKind::Base, 5, 9)
            .expect_err("base has no decoder");
        assert!(err.to_string().contains("needs model autoencoder"), "{err}");
    }
}
