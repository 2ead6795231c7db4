//! Values and affines against nibabel on every NIfTI file nibabel ships and on fixtures covering
//! every datatype, both byte orders, scaling, every orientation code, NIfTI-2, pairs and gzip.
//! Needs the reference venv (`BRAINPIPE_REF_PYTHON`, set by `make test`).

use std::path::Path;
use std::process::Command;

use brainpipe_nifti::{read_f32, read_header};
use serde_json::Value;

fn ulps(a: f32, b: f32) -> u32 {
    if a == b || (a.is_nan() && b.is_nan()) {
        return 0;
    }
    let key = |x: f32| {
        let bits = x.to_bits() as i32;
        if bits < 0 { i32::MIN - bits } else { bits }
    };
    key(a).abs_diff(key(b))
}

#[test]
fn reads_like_nibabel() {
    let Some(python) = brainpipe_core::reference_python("reads_like_nibabel") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let script = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/nibabel_oracle.py");
    let status = Command::new(&python).arg(&script).arg(dir.path()).status().expect("python runs");
    assert!(status.success(), "the nibabel oracle script failed");
    let cases: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.path().join("cases.json")).expect("cases"))
            .expect("json");
    assert!(cases.len() > 150, "expected the full fixture set, got {}", cases.len());
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let path = Path::new(case["path"].as_str().expect("path"));
        let header = read_header(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let shape: Vec<usize> = serde_json::from_value(case["shape"].clone()).expect("shape");
        assert_eq!(header.dims, shape, "{name}: dims");
        let want: Vec<Vec<f64>> = serde_json::from_value(case["affine"].clone()).expect("affine");
        let got = header.affine();
        for r in 0..4 {
            for c in 0..4 {
                assert!(
                    (got[r][c] - want[r][c]).abs() <= 1e-5 * (1.0 + want[r][c].abs()),
                    "{name}: affine {got:?} vs {want:?}"
                );
            }
        }
        if !case["data"].as_bool().unwrap_or(false) {
            continue;
        }
        let (_, values) = read_f32(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let reference: Vec<f32> = std::fs::read(case["reference"].as_str().expect("reference"))
            .expect("reference values")
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(values.len(), reference.len(), "{name}: value count");
        let exact = case["exact"].as_bool().unwrap_or(false);
        let worst = values.iter().zip(&reference).map(|(a, b)| ulps(*a, *b)).max().unwrap_or(0);
        if exact {
            assert_eq!(worst, 0, "{name}: integer data must match exactly");
        } else {
            assert!(worst <= 1, "{name}: {worst} ulps off");
        }
    }
}
