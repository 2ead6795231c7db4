//! Generates a synthetic study outside any pipeline (what `bench/synthetic.sh` times):
//!
//! ```text
//! cargo run --release -p brainpipe-ingest --example synthetic -- OUT_DIR [key=value …] [vectors=FILE]
//! ```
//!
//! Values parse as JSON when they can (`subjects=15`, `time_series=true`), else as strings
//! (`paradigm=images`). Prints the oracle ceiling and the elapsed time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::{Map, Value};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: synthetic OUT_DIR [key=value …] [vectors=FILE]");
        return ExitCode::from(2);
    };
    let mut params = Map::new();
    let mut inputs = BTreeMap::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            eprintln!("error: `{arg}` is not key=value");
            return ExitCode::from(2);
        };
        if key == "vectors" {
            inputs.insert(key.to_owned(), PathBuf::from(value));
            continue;
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        params.insert(key.to_owned(), value);
    }
    let started = Instant::now();
    let stage = brainpipe_ingest::Synthetic;
    match brainpipe_core::run_standalone(
        &stage,
        &inputs,
        &Value::Object(params),
        &out,
        &BTreeMap::new(),
    ) {
        Ok(manifest) => {
            let note = |k: &str| manifest.notes.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
            println!(
                "oracle top1 {:.4} top5 {:.4} pairwise {:.4}; {} brain voxels; {:.2} s",
                note("oracle_top1"),
                note("oracle_top5"),
                note("oracle_pairwise"),
                note("brain_voxels"),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
