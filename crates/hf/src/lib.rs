//! Hugging Face model files that brainpipe reads without LibTorch: CLIP's `config.json`
//! ([`ClipConfig`]) and its byte-level BPE tokenizer ([`Tokenizer`]: the shipped merges, or a
//! model directory's `vocab.json` and `merges.txt`).
//!
//! They live apart from `brainpipe-clip` (the model on LibTorch) so that what parses untrusted
//! files can be fuzzed and used by the driver without linking LibTorch; `brainpipe-clip`
//! re-exports every item.

pub mod config;
mod error;
pub mod tokenizer;

pub use config::{Activation, ClipConfig, TextConfig, VisionConfig};
pub use error::{HfError, Result};
pub use tokenizer::{
    CONTEXT_LENGTH, END_OF_TEXT, MERGES_FILE, SPECIAL_TOKENS_FILE, START_OF_TEXT,
    TOKENIZER_CONFIG_FILE, Tokenizer, VOCAB_FILE, VOCAB_SIZE,
};
