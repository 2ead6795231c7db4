//! Word → vector files for `clip.words` (GloVe text, a Pereira-layout MATLAB v5 `.mat`, or Parquet
//! with `word` and `vector` columns), read by brainpipe-ingest's reader: the synthetic study and the
//! targets read vector files the same way.

pub use brainpipe_ingest::{WordVectors, read_word_vectors};
