//! Pipeline YAML (`brainpipe_pipeline::Pipeline::from_text`, what `plan` and `run` load): every
//! input loads or gives a one-line error, never panicking, hanging or recursing without bound;
//! what loads has its stages in an order where every upstream stage comes first, and filling
//! its commands' placeholders terminates (single pass: a value is never re-expanded).

#![no_main]

use std::path::Path;

use brainpipe_pipeline::{NodeKind, Pipeline, Registry, fill_placeholders};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let registry = Registry::new();
    match Pipeline::from_text(Path::new("/fuzz/p.yaml"), text, &registry, &[]) {
        Ok(pipeline) => {
            let mut seen = std::collections::BTreeSet::new();
            for node in &pipeline.nodes {
                for up in node.upstream() {
                    assert!(seen.contains(up), "{} before its upstream {up}", node.id);
                }
                seen.insert(node.id.as_str());
                if let NodeKind::External { command, .. } = &node.kind {
                    // A value holding placeholder text stays as it is.
                    let filled = fill_placeholders(command, |_| Some("{params.x}".to_owned()));
                    let _ = filled.len();
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "one line: {message}");
        }
    }
});
