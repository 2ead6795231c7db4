//! BIDS `events.tsv` files (`brainpipe_ingest::read_events`): every input reads or gives a
//! one-line error naming the file, never panicking; what reads has a stimulus per event and
//! finite onsets and durations.

#![no_main]

use std::io::Write;

use brainpipe_ingest::read_events;
use libfuzzer_sys::fuzz_target;

mod scratch;
use scratch::scratch;

fuzz_target!(|data: &[u8]| {
    let path = scratch().join("sub-01_task-x_events.tsv");
    std::fs::File::create(&path).and_then(|mut f| f.write_all(data)).expect("write input");
    match read_events(&path, "trial_type", "paradigm") {
        Ok(events) => {
            for e in &events {
                let _ = format!("{e:?}");
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "one line: {message}");
            assert!(message.contains("events.tsv"), "names the file: {message}");
        }
    }
});
