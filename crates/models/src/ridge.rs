//! `models.ridge`: the linear baseline (Pereira et al. 2018 style) — closed-form ridge
//! regression from the features to the target vectors, alpha chosen per fold by inner
//! cross-validation on the training subjects, computed in `f64`.

use std::path::Path;

use brainpipe_artifacts::{Predictions, write_predictions};
use brainpipe_core::{
    ArtifactKind, Context, NamedTensor, Port, Stage, StageError, write_safetensors,
};
use brainpipe_tensor::{ResolveDevice, device_name};
use tch::{Device, Kind, Tensor};

use crate::cv::{CrossValidation, Validation, folds};
use crate::data::{Dataset, read_roi_blocks, training_inputs};
use crate::error::{ModelsError, Result};
use crate::select::{Selected, select};
pub use brainpipe_params::models::RidgeParams;

/// Table kind of the ridge model files' metadata.
pub const RIDGE_SCHEMA: &str = "brain2word-ridge/1";

/// `models.ridge`.
pub struct Ridge;

impl Stage for Ridge {
    type Params = RidgeParams;
    const NAME: &'static str = "models.ridge";
    const VERSION: u32 = 3;
    const SUMMARY: &'static str = "Ridge baseline: closed-form (one eigendecomposition, dual or primal by shape, f64) features → target vectors, alpha by inner cross-validation";

    fn inputs(&self) -> Vec<Port> {
        training_inputs(
            "rois.parquet of features.template_pad: ROI blocks for `select: roi_stability`",
        )
    }

    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::output(
                "model",
                "model",
                ArtifactKind::Directory,
                "fold-NN.safetensors: `weight` [dim, inputs] (zero on unselected columns), `bias` [dim]; config with the chosen alpha and columns",
            ),
            Port::output(
                "predictions",
                "predictions.parquet",
                ArtifactKind::table(brainpipe_artifacts::PREDICTIONS),
                "per test scan: predicted embedding (no class scores)",
            ),
        ]
    }

    fn run(&self, ctx: &mut Context, p: &RidgeParams) -> Result<(), StageError> {
        brainpipe_tensor::apply_threads_param(p.threads);
        let device = p.device.resolve()?;
        ctx.set_device(device_name(device));
        if p.alphas.is_empty() || p.alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
            return Err(ModelsError::Params("alphas must be positive and finite".into()).into());
        }
        let data =
            Dataset::read(ctx.input("features")?, ctx.input("targets")?, &p.stimulus_column)?;
        let blocks = match ctx.optional_input("rois") {
            Some(path) => read_roi_blocks(path, data.width)?,
            None => Vec::new(),
        };
        let dir = ctx.output("model");
        std::fs::create_dir_all(&dir).map_err(|e| brainpipe_core::Error::io(&dir, e))?;
        let fits = fit_all(&data, &blocks, p, device, &dir)?;
        ctx.note("alphas", fits.alphas);
        ctx.note("selected_columns", fits.selected);
        write_predictions(&ctx.output("predictions"), &fits.predictions)?;
        Ok(())
    }
}

fn rows_tensor(values: &[f32], dim: usize, device: Device) -> Tensor {
    Tensor::from_slice(values).view([-1, dim as i64]).to_kind(Kind::Double).to_device(device)
}

/// A ridge solver over one training set, `n` scans × `p` columns, by one eigendecomposition that
/// serves every alpha: of the centred Gram matrix `X Xᵀ` (`n × n`, the dual form) when `n ≤ p`,
/// of `Xᵀ X` (`p × p`, the primal form) when there are more scans than columns. Both give
/// `W = Xᵀ (X Xᵀ + αI)⁻¹ Y = (Xᵀ X + αI)⁻¹ Xᵀ Y` (checked against each other in the tests).
struct Solver {
    x_mean: Tensor,
    y_mean: Tensor,
    form: Form,
    /// Eigenvalues (clamped at 0) of the decomposed matrix.
    l: Tensor,
    /// `Qᵀ (Y − ȳ)` (dual) or `Vᵀ Xᵀ (Y − ȳ)` (primal).
    projected: Tensor,
}

enum Form {
    /// Eigenvectors `Q` of `X Xᵀ` and the centred `X`.
    Dual { q: Tensor, x: Tensor },
    /// Eigenvectors `V` of `Xᵀ X`.
    Primal { v: Tensor },
}

impl Solver {
    fn new(x: &Tensor, y: &Tensor) -> Solver {
        Solver::with_form(x, y, x.size()[0] > x.size()[1])
    }

    /// The solver in the primal form when `primal`, else the dual.
    fn with_form(x: &Tensor, y: &Tensor, primal: bool) -> Solver {
        let x_mean = x.mean_dim([0i64].as_slice(), true, Kind::Double);
        let y_mean = y.mean_dim([0i64].as_slice(), true, Kind::Double);
        let xc = x - &x_mean;
        let yc = y - &y_mean;
        let (l, form, projected) = if !primal {
            let (l, q) = xc.mm(&xc.transpose(0, 1)).linalg_eigh("L");
            let projected = q.transpose(0, 1).mm(&yc);
            (l, Form::Dual { q, x: xc }, projected)
        } else {
            let (l, v) = xc.transpose(0, 1).mm(&xc).linalg_eigh("L");
            let projected = v.transpose(0, 1).mm(&xc.transpose(0, 1).mm(&yc));
            (l, Form::Primal { v }, projected)
        };
        Solver { x_mean, y_mean, form, l: l.clamp_min(0.0), projected }
    }

    /// Primal weights `[inputs, dim]`.
    fn weights(&self, alpha: f64) -> Tensor {
        let scaled = &self.projected * (&self.l + alpha).reciprocal().unsqueeze(1);
        match &self.form {
            Form::Dual { q, x } => x.transpose(0, 1).mm(&q.mm(&scaled)),
            Form::Primal { v } => v.mm(&scaled),
        }
    }

    fn predict(&self, x: &Tensor, alpha: f64) -> Tensor {
        (x - &self.x_mean).mm(&self.weights(alpha)) + &self.y_mean
    }
}

/// Picks the alpha with the lowest summed squared error over inner folds of `train`.
fn choose_alpha(
    data: &Dataset,
    train: &[usize],
    columns: Option<&[usize]>,
    p: &RidgeParams,
    device: Device,
) -> f64 {
    let width = columns.map_or(data.width, <[usize]>::len);
    let subjects: Vec<String> = train.iter().map(|&i| data.subject[i].clone()).collect();
    let inner_cv = {
        let mut distinct = subjects.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() >= 2 {
            CrossValidation::LeaveOneSubjectOut
        } else {
            CrossValidation::WithinSubject
        }
    };
    let inner = folds(&subjects, inner_cv, p.inner_folds, Validation::Fraction, 0.0, p.seed);
    let mut errors = vec![0.0; p.alphas.len()];
    let cap = if p.max_inner_folds == 0 { inner.len() } else { p.max_inner_folds };
    for f in inner.iter().take(cap) {
        let fit: Vec<usize> = f.train.iter().chain(&f.validation).map(|&k| train[k]).collect();
        let held: Vec<usize> = f.test.iter().map(|&k| train[k]).collect();
        let solver = Solver::new(
            &rows_tensor(&data.inputs_of(&fit, columns), width, device),
            &rows_tensor(&data.target_vectors(&fit), data.targets.dim, device),
        );
        let x_held = rows_tensor(&data.inputs_of(&held, columns), width, device);
        let y_held = rows_tensor(&data.target_vectors(&held), data.targets.dim, device);
        for (e, &alpha) in errors.iter_mut().zip(&p.alphas) {
            *e += (solver.predict(&x_held, alpha) - &y_held)
                .square()
                .sum(Kind::Double)
                .double_value(&[]);
        }
    }
    let best = errors.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |b| b.0);
    p.alphas[best]
}

/// What [`fit_all`] returns besides the files it writes.
struct Fits {
    predictions: Predictions,
    /// Chosen alpha per fold.
    alphas: Vec<f64>,
    /// Columns read per fold.
    selected: Vec<usize>,
}

/// Fits every outer fold; writes the fold files and returns the predictions and chosen alphas.
fn fit_all(
    data: &Dataset,
    blocks: &[(usize, usize)],
    p: &RidgeParams,
    device: Device,
    dir: &Path,
) -> Result<Fits> {
    let outer = folds(&data.subject, p.cv, p.folds, Validation::Fraction, 0.0, p.seed);
    let mut fits =
        Fits { predictions: Predictions::default(), alphas: Vec::new(), selected: Vec::new() };
    for fold in &outer {
        let train: Vec<usize> = fold.train.iter().chain(&fold.validation).copied().collect();
        let selected = select(data, &train, blocks, p.select, p.select_columns)?;
        let columns = selected.as_ref().map(|s| s.columns.as_slice());
        let width = columns.map_or(data.width, <[usize]>::len);
        fits.selected.push(width);
        let alpha = choose_alpha(data, &train, columns, p, device);
        fits.alphas.push(alpha);
        let solver = Solver::new(
            &rows_tensor(&data.inputs_of(&train, columns), width, device),
            &rows_tensor(&data.target_vectors(&train), data.targets.dim, device),
        );
        let weights = solver.weights(alpha);
        let bias = &solver.y_mean - solver.x_mean.mm(&weights);
        let x_test = rows_tensor(&data.inputs_of(&fold.test, columns), width, device);
        let pred =
            (x_test.mm(&weights) + &bias).to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
        let embedding = Vec::<f32>::try_from(&pred.view([-1]))?;
        let to_vec = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(Vec::<f32>::try_from(
                &t.to_kind(Kind::Float).to_device(Device::Cpu).contiguous().view([-1]),
            )?)
        };
        let file = dir.join(format!("fold-{:02}.safetensors", fold.index));
        let weight = full_width(&to_vec(&weights.transpose(0, 1))?, selected.as_ref(), data.width);
        let tensors = vec![
            NamedTensor::f32("weight", vec![data.targets.dim, data.width], &weight),
            NamedTensor::f32("bias", vec![data.targets.dim], &to_vec(&bias)?),
        ];
        let config = serde_json::json!({
            "model": p.name, "alpha": alpha, "fold": fold.index, "test_subjects": fold.test_subjects,
            "inputs": data.width, "dim": data.targets.dim, "params": p,
            "columns": selected.as_ref().map(|s| &s.columns),
        });
        write_safetensors(&file, &tensors, RIDGE_SCHEMA, &config)?;
        fits.predictions.extend(data.predictions(
            &fold.test,
            &p.name,
            fold.index,
            (embedding, data.targets.dim),
            (Vec::new(), 0),
        ));
    }
    Ok(fits)
}

/// `[dim, selected]` weights as `[dim, width]`, zero on the columns the fold did not read.
fn full_width(weight: &[f32], selected: Option<&Selected>, width: usize) -> Vec<f32> {
    let Some(s) = selected else { return weight.to_vec() };
    let n = s.columns.len();
    let mut out = vec![0.0f32; weight.len() / n.max(1) * width];
    for (row, w) in out.chunks_exact_mut(width).zip(weight.chunks_exact(n)) {
        for (&c, &v) in s.columns.iter().zip(w) {
            row[c] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both forms give the same weights and predictions, with more scans than columns and with
    /// fewer, at alphas from tiny to large.
    #[test]
    fn the_primal_and_dual_forms_agree() {
        tch::manual_seed(3);
        for (n, p) in [(90, 12), (12, 40)] {
            let x = Tensor::randn([n, p], (Kind::Double, Device::Cpu)) * 3.0 + 1.5;
            let y = Tensor::randn([n, 5], (Kind::Double, Device::Cpu)) - 0.5;
            let primal = Solver::with_form(&x, &y, true);
            let dual = Solver::with_form(&x, &y, false);
            let test = Tensor::randn([7, p], (Kind::Double, Device::Cpu));
            for alpha in [1e-3, 1.0, 1e2, 1e5] {
                let diff =
                    (primal.weights(alpha) - dual.weights(alpha)).abs().max().double_value(&[]);
                let scale = dual.weights(alpha).abs().max().double_value(&[]);
                assert!(diff <= 1e-9 * scale.max(1.0), "{n}x{p} alpha {alpha}: {diff} vs {scale}");
                let pd = (primal.predict(&test, alpha) - dual.predict(&test, alpha)).abs().max();
                assert!(pd.double_value(&[]) < 1e-8, "{n}x{p} alpha {alpha}");
            }
            // Not a vacuous comparison: a different alpha moves the weights.
            let moved = (primal.weights(1e-3) - primal.weights(1e5)).abs().max().double_value(&[]);
            assert!(moved > 1e-3, "{moved}");
        }
        // The shape picks the form: primal with more scans than columns.
        let tall = Tensor::randn([30, 4], (Kind::Double, Device::Cpu));
        let y = Tensor::randn([30, 2], (Kind::Double, Device::Cpu));
        assert!(matches!(Solver::new(&tall, &y).form, Form::Primal { .. }));
        let wide = Tensor::randn([4, 30], (Kind::Double, Device::Cpu));
        assert!(matches!(Solver::new(&wide, &y.narrow(0, 0, 4)).form, Form::Dual { .. }));
    }
}
