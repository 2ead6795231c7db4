//! One Adam (amsgrad) step over a Brain2Word-shaped parameter set — a 20,000 × 2,000 first layer
//! (a third of the full 65,730-input layer, to keep the run short), 2,000 × 200, 200 × 300,
//! 300 × 180 and their biases, 40.5 M parameters — with tch's per-variable `nn::Adam` and with
//! brainpipe's `FusedAdam` (one `at::_fused_adam_` call). The gradients are fixed, so only the
//! optimizer is timed. Whole training steps at full size: `gpu_step` example, docs/BENCHMARKS.md.

use brainpipe_tensor::{AdamConfig, FusedAdam};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

const SHAPES: [(i64, i64); 4] = [(2000, 20_000), (200, 2000), (300, 200), (180, 300)];

/// A var store with the shapes above and a fixed gradient on every variable.
fn store() -> nn::VarStore {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    for (i, &(out, inp)) in SHAPES.iter().enumerate() {
        let w = vs.root().var(
            &format!("w{i}"),
            &[out, inp],
            nn::Init::Randn { mean: 0.0, stdev: 0.01 },
        );
        let b = vs.root().var(&format!("b{i}"), &[out], nn::Init::Const(0.0));
        for v in [w, b] {
            // d(sum(v · r))/dv = r: a gradient that stays put between steps.
            let r = Tensor::randn(v.size(), (Kind::Float, Device::Cpu));
            (&v * &r).sum(Kind::Float).backward();
        }
    }
    vs
}

fn adam_step(c: &mut Criterion) {
    let params: u64 = SHAPES.iter().map(|&(o, i)| (o * i + o) as u64).sum();
    let mut group = c.benchmark_group("adam_amsgrad_step");
    group.throughput(Throughput::Elements(params));
    group.sample_size(20);
    let vs = store();
    let mut tch_adam =
        nn::Adam { amsgrad: true, eps: 1e-7, ..Default::default() }.build(&vs, 1e-3).expect("adam");
    group.bench_function("tch_nn_adam", |b| b.iter(|| tch_adam.step()));
    let vs = store();
    let mut fused =
        FusedAdam::new(&vs, AdamConfig { amsgrad: true, eps: 1e-7, ..AdamConfig::default() });
    group.bench_function("fused_adam", |b| b.iter(|| fused.step().expect("fused step")));
    group.finish();
}

criterion_group!(benches, adam_step);
criterion_main!(benches);
