//! Each loss against a numpy implementation of its definition on fixed tensors, and the batched
//! ROI layer against per-ROI matmuls: its own unpacked weights, and 333 independent matmuls in
//! numpy on the weights read back by probing the layer with unit vectors. The numpy part needs `BRAINPIPE_REF_PYTHON` (set by
//! `make test`): skipped with a message when unset
//! (a failure when `CI` is set), a failure when set and unusable.

use std::process::Command;

use brainpipe_models::losses::{
    RegressionForm, classification_loss, cosine_proximity_loss, mean_regularisation_loss,
    reconstruction_loss, regression_loss, regression_loss_of,
};
use brainpipe_models::net::{roi_layer_apply, roi_layer_check};
use tch::Tensor;

const REFERENCE: &str = r#"
import json, sys
import numpy as np
d = json.load(open(sys.argv[1]))
P = np.array(d["p"], np.float64); T = np.array(d["t"], np.float64)
L = np.array(d["logits"], np.float64); C = np.array(d["classes"])
X = np.array(d["x"], np.float64); R = np.array(d["xr"], np.float64)
H = np.array(d["h"], np.float64); M = np.array(d["m"], np.float64)
def cos(a, b): return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
def regression(p, t):
    # Brain2Word: -cos(t_i, p_i) + 1/(B-1) sum_{k=1..B-1} cos(t_i, p_{(i-k) mod B})
    B = len(p)
    return np.mean([-cos(t[i], p[i]) + sum(cos(t[i], p[(i - k) % B]) for k in range(1, B)) / (B - 1) for i in range(B)])
z = L - L.max(1, keepdims=True)
ce = np.mean(-(z[np.arange(len(C)), C] - np.log(np.exp(z).sum(1))))
rec = np.mean([-cos(X[i], R[i]) for i in range(len(X))])
print(json.dumps({"regression": regression(P, T), "cosine": np.mean([-cos(T[i], P[i]) for i in range(len(P))]),
                  "classification": ce, "reconstruction": rec,
                  "mean_reg": regression(H, M)}))
"#;

fn t(values: &[f32], rows: i64) -> Tensor {
    Tensor::from_slice(values).view([rows, -1])
}

fn fixed(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761u32) ^ seed.wrapping_mul(40503)) % 1000) as f32
                / 250.0
                - 2.0
        })
        .collect()
}

#[test]
fn losses_match_numpy_reference() {
    let Some(python) = brainpipe_core::reference_python("losses_match_numpy_reference") else {
        return;
    };
    let (b, d, c, w, h) = (6, 5, 4, 9, 7);
    let (p, tg, logits, x, xr, hid, m) = (
        fixed(b * d, 1),
        fixed(b * d, 2),
        fixed(b * c, 3),
        fixed(b * w, 4),
        fixed(b * w, 5),
        fixed(b * h, 6),
        fixed(b * h, 7),
    );
    let classes: Vec<i64> = (0..b as i64).map(|i| (i * 3) % c as i64).collect();
    let ours = [
        ("regression", regression_loss(&t(&p, 6), &t(&tg, 6))),
        ("regression", regression_loss_of(RegressionForm::BatchNegatives, &t(&p, 6), &t(&tg, 6))),
        ("cosine", cosine_proximity_loss(&t(&p, 6), &t(&tg, 6))),
        ("cosine", regression_loss_of(RegressionForm::Cosine, &t(&p, 6), &t(&tg, 6))),
        ("classification", classification_loss(&t(&logits, 6), &Tensor::from_slice(&classes))),
        ("reconstruction", reconstruction_loss(&t(&x, 6), &t(&xr, 6))),
        ("mean_reg", mean_regularisation_loss(&t(&hid, 6), &t(&m, 6))),
    ];
    let rows =
        |v: &[f32], k: usize| -> Vec<Vec<f32>> { v.chunks(k).map(<[f32]>::to_vec).collect() };
    let input = serde_json::json!({
        "p": rows(&p, d), "t": rows(&tg, d), "logits": rows(&logits, c), "classes": classes,
        "x": rows(&x, w), "xr": rows(&xr, w), "h": rows(&hid, h), "m": rows(&m, h),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("in.json");
    std::fs::write(&file, input.to_string()).expect("write");
    let out = Command::new(&python)
        .args(["-c", REFERENCE])
        .arg(&file)
        .output()
        .expect("BRAINPIPE_REF_PYTHON is set but cannot be run");
    assert!(
        out.status.success(),
        "numpy reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for (name, loss) in ours {
        let got = loss.double_value(&[]);
        let want = reference[name].as_f64().expect("number");
        // f32 arithmetic in LibTorch against f64 in numpy.
        assert!((got - want).abs() < 1e-5, "{name}: {got} vs numpy {want}");
    }
}

#[test]
fn batched_roi_layer_equals_one_matmul_per_roi() {
    tch::manual_seed(5);
    let blocks = [(0, 10), (10, 1), (11, 45), (60, 3), (63, 21), (84, 6)];
    for groups in [1, 2, 3, 6] {
        let (fast, slow, fast_back, slow_back) = roi_layer_check(92, &blocks, 20, groups, 7);
        assert_eq!(fast.size(), vec![7, 1 + 1 + 3 + 1 + 2 + 1]);
        let diff = (fast - slow).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{groups} groups: forward differs by {diff}");
        let diff = (fast_back - slow_back).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{groups} groups: tied backward differs by {diff}");
    }
}

/// The ROI layer, probed: numpy (`tests/roi_layer_reference.py`) reads each ROI's weights back
/// from the layer's responses to unit vectors, checks that no ROI sees another's inputs or writes
/// another's outputs, and compares the forward pass on random rows and the tied backward with 333
/// independent per-ROI matmuls laid out by the definition alone (ROI r's inputs are its block,
/// its outputs the next max(ceil(size / scale), 1) columns in ROI order).
#[test]
fn roi_layer_equals_333_independent_per_roi_matmuls_in_numpy() {
    let Some(python) = brainpipe_core::reference_python(
        "roi_layer_equals_333_independent_per_roi_matmuls_in_numpy",
    ) else {
        return;
    };
    // 333 ROIs of 1..=23 columns in a scrambled size order, a column outside every ROI after
    // each 50th.
    let (mut blocks, mut at) = (Vec::new(), 0usize);
    for r in 0..333usize {
        let size = 1 + (r * 37) % 23;
        blocks.push((at, size));
        at += size + usize::from(r % 50 == 49);
    }
    let (inputs, scale, batch) = (at + 1, 4usize, 5i64);
    let width: usize = blocks.iter().map(|&(_, s)| s.div_ceil(scale).max(1)).sum();
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, t: &Tensor| {
        let values = Vec::<f32>::try_from(&t.contiguous().view([-1])).expect("f32");
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.path().join(name), bytes).expect("write");
    };
    tch::manual_seed(9);
    let random = Tensor::randn([batch, inputs as i64], (tch::Kind::Float, tch::Device::Cpu));
    let h = Tensor::randn([batch, width as i64], (tch::Kind::Float, tch::Device::Cpu));
    let probes = Tensor::cat(
        &[
            Tensor::eye(inputs as i64, (tch::Kind::Float, tch::Device::Cpu)),
            random.zeros_like().narrow(0, 0, 1),
            random.shallow_clone(),
        ],
        0,
    );
    write("x.f32", &random);
    write("h.f32", &h);
    let groups = [1usize, 8];
    for g in groups {
        let (forward, backward) = roi_layer_apply(inputs, &blocks, scale, g, &probes, &h);
        assert_eq!(forward.size(), vec![inputs as i64 + 1 + batch, width as i64]);
        write(&format!("forward-{g}.f32"), &forward);
        write(&format!("backward-{g}.f32"), &backward);
    }
    let spec = serde_json::json!({
        "blocks": blocks, "inputs": inputs, "scale": scale, "batch": batch, "width": width,
        "groups": groups,
    });
    std::fs::write(dir.path().join("spec.json"), spec.to_string()).expect("spec");
    let script = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/roi_layer_reference.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .output()
        .expect("BRAINPIPE_REF_PYTHON is set but cannot be run");
    assert!(
        out.status.success(),
        "numpy per-ROI reference disagrees:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());
}
