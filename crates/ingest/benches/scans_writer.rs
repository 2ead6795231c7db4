//! The encoding half of `ingest.nifti`: `ScansWriter` turning 48 EPI-like volumes (64×64×40,
//! integer values of a smooth baseline plus noise, as f32) into a scans table — BYTE_STREAM_SPLIT,
//! zstd, row groups encoded on worker threads. The end-to-end comparison with nibabel + pyarrow is
//! `bench/nifti_ingest.sh`; the figures are in docs/BENCHMARKS.md.

use brainpipe_ingest::{ScansWriter, TrialInfo, VoxelGrid};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const DIMS: [usize; 3] = [64, 64, 40];
const VOLUMES: usize = 48;

/// Deterministic EPI-like rows: 800 + 200·sin baseline, ±20 noise from a small LCG, rounded.
fn volumes() -> Vec<Vec<f32>> {
    let n: usize = DIMS.iter().product();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..VOLUMES)
        .map(|_| {
            (0..n)
                .map(|v| {
                    state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let noise = ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 40.0;
                    (800.0 + 200.0 * (v as f64 * 6.0 / n as f64).sin() + noise).round() as f32
                })
                .collect()
        })
        .collect()
}

fn write_scans(c: &mut Criterion) {
    let [x, y, z] = DIMS;
    let grid = VoxelGrid {
        dims: DIMS,
        affine: [
            [3.0, 0.0, 0.0, 0.0],
            [0.0, 3.0, 0.0, 0.0],
            [0.0, 0.0, 3.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
        ijk: (0..z)
            .flat_map(|k| (0..y).flat_map(move |j| (0..x).map(move |i| [i, j, k])))
            .collect(),
        roi: None,
    };
    let rows = volumes();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("scans_writer");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((VOLUMES * rows[0].len() * 4) as u64));
    group.bench_function("48_volumes_64x64x40", |b| {
        b.iter(|| {
            let mut writer =
                ScansWriter::create(dir.path(), "sub-01", &grid, "bench").expect("create");
            for (t, row) in rows.iter().enumerate() {
                let trial = TrialInfo {
                    session: String::new(),
                    run: "run-1".to_owned(),
                    trial: t as i32,
                    stimulus: t.to_string(),
                    paradigm: "run-1".to_owned(),
                    onset: None,
                };
                writer.push(trial, row).expect("push");
            }
            writer.finish().expect("finish")
        })
    });
    group.finish();
}

criterion_group!(benches, write_scans);
criterion_main!(benches);
