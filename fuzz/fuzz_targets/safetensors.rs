//! safetensors files (`brainpipe_core::read_safetensors`: model files, HF CLIP and diffusers
//! weights go through their own loaders, this one holds brainpipe's models): every input reads or
//! gives a one-line error naming the file, never panicking or allocating past the file's size;
//! what reads is self-consistent (each tensor's bytes match its shape and type).

#![no_main]

use std::io::Write;

use brainpipe_core::read_safetensors;
use libfuzzer_sys::fuzz_target;

mod scratch;
use scratch::scratch;

fuzz_target!(|data: &[u8]| {
    let path = scratch().join("input.safetensors");
    std::fs::File::create(&path).and_then(|mut f| f.write_all(data)).expect("write input");
    match read_safetensors(&path) {
        Ok(file) => {
            for t in &file.tensors {
                let count: usize = t.shape.iter().product();
                assert_eq!(t.data.len(), count * t.dtype.size(), "{}", t.name);
                if let Some(values) = t.to_f64() {
                    assert_eq!(values.len(), count);
                }
            }
            if let Err(e) = file.config(&path) {
                assert!(!e.to_string().contains('\n'));
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "one line: {message}");
            assert!(message.contains("input.safetensors"), "names the file: {message}");
        }
    }
});
