//! Brain2Word's losses, each a mean over the batch.

pub use brainpipe_params::models::{LossKind, RegressionForm};
use tch::{Kind, Tensor};

/// Guards cosine similarities against zero vectors.
const COS_EPS: f64 = 1e-8;

fn unit_rows(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2.0, [1i64].as_slice(), true).clamp_min(COS_EPS)
}

/// Brain2Word's regression loss: per sample i of a (shuffled) batch of B,
/// `−cos(t_i, p_i) + 1/(B−1) Σ_{k=1..B−1} cos(t_i, p_{(i−k) mod B})` — every other sample of the
/// batch is a negative — averaged over the batch. With B = 1 it is `−cos(t, p)`.
pub fn regression_loss(prediction: &Tensor, target: &Tensor) -> Tensor {
    let b = prediction.size()[0];
    let cos = unit_rows(target).mm(&unit_rows(prediction).transpose(0, 1));
    let own = cos.diagonal(0, 0, 1);
    if b < 2 {
        return -own.mean(Kind::Float);
    }
    let others =
        (cos.sum_dim_intlist([1i64].as_slice(), false, Kind::Float) - &own) / (b - 1) as f64;
    (others - own).mean(Kind::Float)
}

/// The plain CosineProximity loss `−cos(t_i, p_i)`, averaged over the batch (no negatives).
pub fn cosine_proximity_loss(prediction: &Tensor, target: &Tensor) -> Tensor {
    let cos = (unit_rows(target) * unit_rows(prediction)).sum_dim_intlist(
        [1i64].as_slice(),
        false,
        Kind::Float,
    );
    -cos.mean(Kind::Float)
}

/// The regression loss of `form`.
pub fn regression_loss_of(form: RegressionForm, prediction: &Tensor, target: &Tensor) -> Tensor {
    match form {
        RegressionForm::BatchNegatives => regression_loss(prediction, target),
        RegressionForm::Cosine => cosine_proximity_loss(prediction, target),
    }
}

/// Cross-entropy of `logits` against class indices.
pub fn classification_loss(logits: &Tensor, classes: &Tensor) -> Tensor {
    logits.cross_entropy_for_logits(classes)
}

/// The autoencoder's reconstruction loss `−cos(x, x̂)`, averaged over the batch.
pub fn reconstruction_loss(input: &Tensor, reconstruction: &Tensor) -> Tensor {
    cosine_proximity_loss(reconstruction, input)
}

/// Mean regularisation: the regression loss (same batch-negatives form) between a hidden
/// layer's activations and the per-word mean activation of each sample's word.
pub fn mean_regularisation_loss(hidden: &Tensor, word_means: &Tensor) -> Tensor {
    regression_loss(hidden, word_means)
}
