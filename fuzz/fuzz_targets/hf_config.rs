//! A Hugging Face CLIP `config.json` (`brainpipe_hf::ClipConfig::from_file`, what loading a
//! model directory reads first): every input reads or gives a one-line error naming the file,
//! never panicking; what reads is valid, its derived sizes compute without overflow, and it
//! survives a round trip through the `config.json` brainpipe writes.

#![no_main]

use brainpipe_hf::ClipConfig;
use libfuzzer_sys::fuzz_target;

mod scratch;
use scratch::scratch;

fuzz_target!(|data: &[u8]| {
    let path = scratch().join("config.json");
    std::fs::write(&path, data).expect("write input");
    match ClipConfig::from_file(&path) {
        Ok(config) => {
            config.validate().expect("what reads is valid");
            let _ = (config.vision_config.patches_per_side(), config.vision_config.num_positions());
            assert!(config.text_config.context_length() <= brainpipe_hf::CONTEXT_LENGTH);
            let again = ClipConfig::from_json(&config.to_hf_json()).expect("its own JSON reads");
            assert_eq!(again, config, "round trip");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "one line: {message}");
            assert!(message.contains("config.json"), "names the file: {message}");
        }
    }
});
