//! `ingest.pereira` on fixtures written by scipy.io.savemat in both published meta layouts, the MAT
//! reader on Brain2Word's real `180_concepts.mat` when present, and refusals.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use arrow::array::{Array, Int32Array, StringArray};
use brainpipe_artifacts::SCANS;
use brainpipe_artifacts::mat::{MatValue, read_mat};
use brainpipe_core::{f32_list_values, read_table, run_standalone};
use brainpipe_ingest::IngestPereira;
use serde_json::{Value, json};

fn ingest(data: &Path, out: &Path) -> Result<brainpipe_core::Manifest, brainpipe_core::StageError> {
    let inputs = BTreeMap::from([("data".to_owned(), data.to_path_buf())]);
    run_standalone(&IngestPereira, &inputs, &json!({}), out, &BTreeMap::new())
}

#[test]
fn both_meta_layouts_give_scans_with_gordon_rois() {
    let Some(python) =
        brainpipe_core::reference_python("both_meta_layouts_give_scans_with_gordon_rois")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("pereira");
    let script = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/pereira_fixture.py");
    let status = Command::new(python).arg(&script).arg(&data).status().expect("python");
    assert!(status.success(), "fixture script failed");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(data.join("expected.json")).expect("json"))
            .expect("json");
    let out = dir.path().join("out");
    ingest(&data, &out).expect("ingest");
    for subject in ["M01", "M02"] {
        let want = &expected["subjects"][subject];
        let (_, voxels) =
            read_table(&out.join(format!("scans/{subject}.voxels.parquet")), None).expect("voxels");
        let roi = voxels[0].column_by_name("roi").expect("roi");
        let roi = roi.as_any().downcast_ref::<Int32Array>().expect("i32");
        let want_roi: Vec<i32> = serde_json::from_value(want["roi"].clone()).expect("roi");
        assert_eq!(roi.values().to_vec(), want_roi, "{subject}: ROI labels");
        let ijk: Vec<[i32; 3]> = serde_json::from_value(want["ijk"].clone()).expect("ijk");
        let col = |n: &str| {
            voxels[0]
                .column_by_name(n)
                .expect(n)
                .as_any()
                .downcast_ref::<Int32Array>()
                .expect("i32")
                .values()
                .to_vec()
        };
        let (i, j, k) = (col("i"), col("j"), col("k"));
        for (c, v) in ijk.iter().enumerate() {
            assert_eq!([i[c], j[c], k[c]], *v, "{subject}: column {c} position");
        }
        let (_, batches) =
            read_table(&out.join(format!("scans/{subject}.parquet")), Some(SCANS)).expect("scans");
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 18, "6 words × 3 paradigms");
        let mut seen = 0;
        for batch in &batches {
            let paradigm = batch.column_by_name("paradigm").expect("p");
            let paradigm = paradigm.as_any().downcast_ref::<StringArray>().expect("utf8");
            let stimulus = batch.column_by_name("stimulus").expect("s");
            let stimulus = stimulus.as_any().downcast_ref::<StringArray>().expect("utf8");
            let (values, width) = f32_list_values(
                Path::new("scans"),
                "voxels",
                batch.column_by_name("voxels").expect("v").as_ref(),
            )
            .expect("f32");
            for r in 0..batch.num_rows() {
                if stimulus.value(r) == "ability" {
                    let first: Vec<f32> =
                        serde_json::from_value(want["first_rows"][paradigm.value(r)].clone())
                            .expect("row");
                    assert_eq!(
                        values[r * width..(r + 1) * width].to_vec(),
                        first,
                        "{subject} {}",
                        paradigm.value(r)
                    );
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, 3, "one `ability` row per paradigm");
    }
}

#[test]
fn real_brain2word_vectors_read_through_the_mat_reader() {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../../../shared/data/brain2word/180_concepts.mat");
    if !path.exists() {
        eprintln!("skipped: {} is absent", path.display());
        return;
    }
    let vars = read_mat(&path).expect("read");
    let Some(MatValue::Numeric { dims, data }) = vars.get("data") else { panic!("no data") };
    assert_eq!(dims, &vec![180, 300]);
    assert!(data.iter().all(|v| v.is_finite()));
    let words = vars.get("words").and_then(MatValue::text).expect("words");
    let words: Vec<&str> = words.lines().collect();
    assert_eq!(words.len(), 180);
    assert_eq!(&words[..3], &["ability", "accomplished", "angry"]);
}

#[test]
fn malformed_files_are_refused_naming_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let subject = dir.path().join("M09");
    std::fs::create_dir(&subject).expect("mkdir");
    let file = subject.join("examples_180concepts_pictures.mat");
    let out = dir.path().join("out");

    std::fs::write(
        &file,
        [&[0x89u8, b'H', b'D', b'F', 0x0d, 0x0a, 0x1a, 0x0a][..], &[0u8; 200]].concat(),
    )
    .expect("write");
    let err = ingest(dir.path(), &out).expect_err("hdf5").to_string();
    assert!(err.contains("examples_180concepts_pictures.mat") && err.contains("v7.3"), "{err}");

    let mut header = b"MATLAB 5.0 MAT-file".to_vec();
    header.resize(124, b' ');
    header.extend_from_slice(&[0, 1, b'I', b'M']);
    let mut truncated = header.clone();
    truncated.extend_from_slice(&14u32.to_le_bytes());
    truncated.extend_from_slice(&4000u32.to_le_bytes());
    truncated.extend_from_slice(&[0u8; 40]);
    std::fs::write(&file, &truncated).expect("write");
    let err = ingest(dir.path(), &out).expect_err("truncated").to_string();
    assert!(err.contains("runs past the end of the file"), "{err}");

    std::fs::write(&file, &header).expect("write");
    let err = ingest(dir.path(), &out).expect_err("empty").to_string();
    assert!(err.contains("no `examples`"), "{err}");
    assert!(!out.exists());

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let err = ingest(&empty, &out).expect_err("nothing").to_string();
    assert!(err.contains("no *_180concepts_"), "{err}");
}
