//! Brain2CLIP schedules, phase by phase on one network: a frozen encoder stays bit-identical,
//! joint training after pretraining moves every trained layer.

use std::collections::HashMap;

use brainpipe_artifacts::Targets;
use tch::{Device, Tensor, nn};

use super::{DataTensors, EpochRecord, FoldRun, TrainParams, net_config};
use crate::data::Dataset;
use crate::net::{ModelKind, Net};
use crate::schedule::{Phase, Plan, Schedule};

/// 3 subjects × 24 scans of 12 stimuli (each twice), 16 inputs, 6-d targets.
fn dataset() -> Dataset {
    let (stimuli, dim, width) = (12usize, 6usize, 16usize);
    let mut state = 5u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32
    };
    let vectors: Vec<f32> = (0..stimuli * dim).map(|_| next()).collect();
    let map: Vec<f32> = (0..width * dim).map(|_| next()).collect();
    let mut d = Dataset { width, ..Dataset::default() };
    for s in 0..3 {
        for t in 0..2 * stimuli {
            let w = t % stimuli;
            d.subject.push(format!("sub-{:02}", s + 1));
            d.trial.push(t as i32);
            d.stimulus.push(format!("s{w}"));
            d.paradigm.push("image".into());
            d.target_row.push(w);
            for v in 0..width {
                let signal: f32 = (0..dim).map(|k| map[v * dim + k] * vectors[w * dim + k]).sum();
                d.x.push(signal + 0.1 * next());
            }
        }
    }
    d.targets = Targets {
        stimulus: (0..stimuli).map(|w| format!("s{w}")).collect(),
        class: (0..stimuli as i32).collect(),
        vectors,
        dim,
        ..Targets::default()
    };
    d
}

fn params(schedule: Schedule) -> TrainParams {
    TrainParams {
        model: ModelKind::Autoencoder,
        loss: crate::losses::LossKind::Regression,
        hidden: vec![12, 8],
        batch_size: 16,
        patience: 100,
        schedule,
        ..TrainParams::default()
    }
}

fn values(vs: &nn::VarStore) -> HashMap<String, Tensor> {
    vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect()
}

/// Pretrains a fresh autoencoder for 4 epochs, then runs `then` for 4 epochs; returns the
/// variables after each phase and the records.
fn two_phases(then: Phase) -> (HashMap<String, Tensor>, HashMap<String, Tensor>, Vec<EpochRecord>) {
    let data = dataset();
    let schedule = match then {
        Phase::Regression => Schedule::PretrainThenRegression,
        _ => Schedule::PretrainThenJoint,
    };
    let p = params(schedule);
    let config = net_config(&data, &[], &p).expect("config");
    let d = DataTensors::new(&data, &config.target_mean, Device::Cpu).expect("tensors");
    let folds =
        crate::cv::folds(&data.subject, p.cv, p.folds, p.validation, p.validation_fraction, p.seed);
    let fold = &folds[0];
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &config);
    let run = FoldRun {
        d: &d,
        config: &config,
        p: &p,
        fold,
        name: "test",
        train_idx: d.index(&fold.train),
        val_idx: d.index(&fold.validation),
        phased: true,
    };
    let mut records = Vec::new();
    run.phase(&vs, &net, Plan { phase: Phase::Pretrain, epochs: 4 }, &mut records)
        .expect("pretrain");
    let after_pretraining = values(&vs);
    run.phase(&vs, &net, Plan { phase: then, epochs: 4 }, &mut records).expect("phase 2");
    (after_pretraining, values(&vs), records)
}

fn equal(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.equal(b)
}

#[test]
fn pretrain_then_regression_keeps_the_encoder_bit_identical() {
    let (before, after, records) = two_phases(Phase::Regression);
    let mut encoder = 0;
    for (name, v) in &before {
        if name.starts_with("encoder.") {
            encoder += 1;
            assert!(equal(v, &after[name]), "{name} changed while the encoder was frozen");
        }
    }
    // Weights, biases and the batch-normalisation statistics of both encoder layers.
    assert!(encoder >= 8, "{encoder} encoder variables");
    assert!(!equal(&before["head.weight"], &after["head.weight"]), "the regression head learns");
    let phases: Vec<_> = records.iter().map(|r| r.phase.as_deref().unwrap_or("")).collect();
    assert_eq!(
        phases,
        ["pretrain"; 4].iter().chain(&["regression"; 4]).copied().collect::<Vec<_>>()
    );
    assert!(records[..4].iter().all(|r| r.train_regression.is_none()));
    assert!(records[..4].iter().all(|r| r.train_reconstruction.is_some()));
    assert!(records[4..].iter().all(|r| r.train_regression.is_some()));
    assert!(records[4..].iter().all(|r| r.train_reconstruction.is_none()));
    let epochs: Vec<i32> = records.iter().map(|r| r.epoch).collect();
    assert_eq!(epochs, (0..8).collect::<Vec<_>>(), "epochs count on across phases");
}

#[test]
fn pretrain_then_joint_moves_every_trained_weight() {
    let (before, after, records) = two_phases(Phase::Joint);
    let mut checked = 0;
    for (name, v) in &before {
        // The classifier (and the norm feeding it) get no gradient under `loss: regression`.
        if name.starts_with("classifier.") || name.starts_with("head_norm.") {
            continue;
        }
        checked += 1;
        assert!(!equal(v, &after[name]), "{name} did not move in joint training");
    }
    assert!(checked >= 20, "{checked} variables checked");
    assert!(records[4..].iter().all(|r| r.train_regression.is_some()
        && r.train_reconstruction.is_some()
        && r.phase.as_deref() == Some("joint")));
}
