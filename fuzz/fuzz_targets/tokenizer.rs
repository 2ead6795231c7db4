//! CLIP's tokenizer files (`brainpipe_hf::Tokenizer::from_model_dir`: a model directory's
//! `vocab.json` and `merges.txt`) and the text it encodes. The input is `vocab.json`, a NUL,
//! `merges.txt`, a NUL, then a caption (any part may be missing).
//!
//! Every pair of files reads or gives a one-line error naming the file at fault, never
//! panicking; a tokenizer that reads encodes the caption into ids of its vocabulary, framed by
//! its start and end tokens and cut to the context length; the built-in tokenizer does the same
//! for any caption.

#![no_main]

use brainpipe_hf::{CONTEXT_LENGTH, MERGES_FILE, Tokenizer, VOCAB_FILE, VOCAB_SIZE};
use libfuzzer_sys::fuzz_target;

mod scratch;
use scratch::scratch;

/// The caption's ids through `tokenizer`, checked against its vocabulary of `size` tokens.
fn check_encoding(tokenizer: &Tokenizer, size: usize, text: &str) {
    let framed = tokenizer.encode_for_model(text, CONTEXT_LENGTH);
    for &id in &framed {
        assert!((0..size as i64).contains(&id), "id {id} outside the vocabulary of {size}");
    }
    assert!((2..=CONTEXT_LENGTH).contains(&framed.len()), "{} ids", framed.len());
    assert_eq!(framed[0], tokenizer.start_of_text());
    assert_eq!(framed[framed.len() - 1], tokenizer.end_of_text());
    // The batch pads each row to the longest (the caption's own encoding was checked above;
    // encoding it a second time here would halve the rate).
    let (batch, width) = tokenizer.batch(&["a photo", "<|endoftext|>x"], CONTEXT_LENGTH);
    assert_eq!(batch.len(), 2 * width);
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let (vocab, merges, text) = (parts.next(), parts.next(), parts.next());
    let text = String::from_utf8_lossy(text.unwrap_or_default());
    check_encoding(Tokenizer::shared(), VOCAB_SIZE, &text);

    let dir = scratch();
    for (name, part) in [(VOCAB_FILE, vocab), (MERGES_FILE, merges)] {
        let path = dir.join(name);
        match part {
            Some(bytes) => std::fs::write(&path, bytes).expect("write input"),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    match Tokenizer::from_model_dir(dir) {
        Ok(Some(tokenizer)) => {
            let size = tokenizer.vocabulary().len();
            check_encoding(&tokenizer, size, &text);
        }
        Ok(None) => unreachable!("a vocabulary is always written"),
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "one line: {message}");
            assert!(
                message.contains(VOCAB_FILE) || message.contains(MERGES_FILE),
                "names the file: {message}"
            );
        }
    }
});
