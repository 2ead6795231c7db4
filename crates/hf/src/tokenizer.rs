//! CLIP's byte-level BPE tokenizer, as Hugging Face's `CLIPTokenizer` (transformers 5,
//! `tokenizers` backend) applies it:
//!
//! 1. the special tokens `<|startoftext|>` / `<|endoftext|>` written in the text map to their ids;
//! 2. the rest is NFC-normalised, every whitespace run becomes one space, and each character is
//!    lower-cased;
//! 3. CLIP's pattern (`'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+`) cuts words, the
//!    text between them is dropped;
//! 4. each word's UTF-8 bytes become GPT-2's printable byte characters, the last one marked
//!    end-of-word (`</w>`), and BPE merges them by rank;
//! 5. `<|startoftext|>` + at most `context − 2` tokens + `<|endoftext|>` (truncation as HF).
//!
//! The vocabulary is built from `bpe_simple_vocab_16e6.txt.gz` (MIT, shipped in `data/clip/`)
//! exactly as OpenAI's `simple_tokenizer.py` does: the 256 byte characters, the same with `</w>`,
//! the first 48,894 merges, then the two special tokens (ids 49406, 49407).
//!
//! A model directory may carry its own tokenizer as Hugging Face writes it (`vocab.json`,
//! `merges.txt`); [`Tokenizer::from_model_dir`] reads it and [`Tokenizer::save`] writes one.
//!
//! Deviation: OpenAI's original cleans text with `ftfy` and unescapes HTML entities; transformers 5
//! does neither, and parity with it is what the tests check.

use brainpipe_core::IoContext;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use crate::error::{HfError, Result};

/// The shipped BPE merges (OpenAI CLIP / open_clip, MIT).
const BPE_VOCAB_GZ: &[u8] = include_bytes!("../../../data/clip/bpe_simple_vocab_16e6.txt.gz");
/// Merges kept from the file: 49,152 − 256 − 2 (OpenAI's `simple_tokenizer.py`).
const MERGES: usize = 49152 - 256 - 2;
/// CLIP's context length in tokens, start and end included.
pub const CONTEXT_LENGTH: usize = 77;
/// The id of `<|startoftext|>`.
pub const START_OF_TEXT: i64 = 49406;
/// The id of `<|endoftext|>`, also the padding token (as Hugging Face pads).
pub const END_OF_TEXT: i64 = 49407;
/// The size of the vocabulary.
pub const VOCAB_SIZE: usize = 49408;
const WORD_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+";
/// The start token: Hugging Face's `bos_token`.
const START_TOKEN: &str = "<|startoftext|>";
/// The end token: Hugging Face's `eos_token`, and also its `pad_token` and `unk_token` for CLIP.
const END_TOKEN: &str = "<|endoftext|>";
/// The token → id map of a Hugging Face tokenizer directory.
pub const VOCAB_FILE: &str = "vocab.json";
/// The BPE merges of a Hugging Face tokenizer directory, one `left right` pair a line by rank.
pub const MERGES_FILE: &str = "merges.txt";
/// The tokenizer settings of a Hugging Face tokenizer directory (class, special tokens, length).
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// The special tokens of a Hugging Face tokenizer directory.
pub const SPECIAL_TOKENS_FILE: &str = "special_tokens_map.json";
/// The first line of `merges.txt` as Hugging Face writes it (its readers skip it).
const MERGES_HEADER: &str = "#version: 0.2";

/// CLIP's tokenizer. Cheap to share (`&Tokenizer` is `Sync`); build it once.
pub struct Tokenizer {
    /// Token strings by id (for [`Tokenizer::vocabulary`]).
    vocab: Vec<String>,
    /// (left id, right id) → (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Id of each byte's character, and of the same character ending a word.
    byte_ids: [u32; 256],
    byte_end_ids: [u32; 256],
    /// `<|startoftext|>` and `<|endoftext|>` with their ids, as they are matched in the text.
    specials: [(&'static str, i64); 2],
    words: &'static Regex,
    whitespace: &'static Regex,
}

/// What makes a vocabulary and its merges unusable, by the file that has to change.
enum Invalid {
    /// The vocabulary lacks a token the tokenizer needs.
    Vocab(String),
    /// The merge of this rank names a token the vocabulary lacks.
    Merge(usize, String),
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("vocab", &self.vocab.len()).finish_non_exhaustive()
    }
}

/// GPT-2's map from bytes to printable characters (OpenAI's `bytes_to_unicode`), in its order:
/// the printable Latin-1 bytes as themselves, then the others as U+0100….
fn bytes_to_unicode() -> Vec<(u8, char)> {
    let mut printable: Vec<u8> = (b'!'..=b'~').chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars: Vec<u32> = printable.iter().map(|&b| u32::from(b)).collect();
    let mut next = 256;
    for b in 0..=255u8 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(next);
            next += 1;
        }
    }
    printable
        .into_iter()
        .zip(chars)
        .map(|(b, c)| (b, char::from_u32(c).expect("code points below 512 are chars")))
        .collect()
}

impl Tokenizer {
    /// The tokenizer over the shipped vocabulary.
    pub fn new() -> Self {
        let mut text = String::new();
        flate2::read::GzDecoder::new(BPE_VOCAB_GZ)
            .read_to_string(&mut text)
            .expect("the shipped BPE vocabulary is valid gzip text");
        Self::from_merges_text(&text)
    }

    /// One tokenizer for the whole process, built on first use (building one decompresses and
    /// indexes the 49,408-token vocabulary).
    pub fn shared() -> &'static Tokenizer {
        Self::shared_handle()
    }

    /// The process-wide built-in tokenizer as a handle a model can hold beside a loaded one.
    pub fn shared_handle() -> &'static Arc<Tokenizer> {
        static SHARED: OnceLock<Arc<Tokenizer>> = OnceLock::new();
        SHARED.get_or_init(|| Arc::new(Tokenizer::new()))
    }

    fn from_merges_text(text: &str) -> Self {
        let merges: Vec<(&str, &str)> =
            text.lines().skip(1).take(MERGES).filter_map(|line| line.split_once(' ')).collect();
        let byte_chars = bytes_to_unicode();
        let mut vocab: Vec<String> = byte_chars.iter().map(|(_, c)| c.to_string()).collect();
        vocab.extend(byte_chars.iter().map(|(_, c)| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.extend([START_TOKEN, END_TOKEN].map(str::to_owned));
        match Self::build(vocab, &merges) {
            Ok(tokenizer) => tokenizer,
            Err(Invalid::Vocab(message) | Invalid::Merge(_, message)) => {
                unreachable!("the shipped vocabulary is complete: {message}")
            }
        }
    }

    /// Indexes `vocab` (token strings by id) and `merges` (by rank). Every token of a merge, and
    /// the merged token, must be in the vocabulary (as the `tokenizers` library requires); bytes
    /// without a token of their own encode as the unknown token, `<|endoftext|>`, as there.
    fn build(vocab: Vec<String>, merges: &[(&str, &str)]) -> Result<Self, Invalid> {
        // A later duplicate wins, as in Python's dict(zip(vocab, range(len(vocab)))).
        let ids: HashMap<&str, u32> =
            vocab.iter().enumerate().map(|(i, s)| (s.as_str(), i as u32)).collect();
        let id_of = |token: &str| {
            ids.get(token)
                .copied()
                .ok_or_else(|| Invalid::Vocab(format!("no token `{token}`, which CLIP needs")))
        };
        let start = id_of(START_TOKEN)?;
        let end = id_of(END_TOKEN)?;
        let mut byte_ids = [end; 256];
        let mut byte_end_ids = [end; 256];
        for (b, c) in bytes_to_unicode() {
            let at = usize::from(b);
            byte_ids[at] = ids.get(c.to_string().as_str()).copied().unwrap_or(end);
            byte_end_ids[at] = ids.get(format!("{c}</w>").as_str()).copied().unwrap_or(end);
        }
        let mut merge_map = HashMap::with_capacity(merges.len());
        for (rank, (a, b)) in merges.iter().enumerate() {
            let merged = format!("{a}{b}");
            let lookup = |token: &str| {
                ids.get(token).copied().ok_or_else(|| {
                    Invalid::Merge(rank, format!("`{a} {b}`: `{token}` is not in {VOCAB_FILE}"))
                })
            };
            // A repeated pair takes its later rank, as in Python's dict and in `tokenizers`.
            merge_map.insert((lookup(a)?, lookup(b)?), (rank as u32, lookup(&merged)?));
        }
        Ok(Tokenizer {
            merges: merge_map,
            vocab,
            byte_ids,
            byte_end_ids,
            specials: [(START_TOKEN, i64::from(start)), (END_TOKEN, i64::from(end))],
            words: compiled(&WORDS, WORD_PATTERN),
            whitespace: compiled(&WHITESPACE, r"\s+"),
        })
    }

    /// The tokenizer of a Hugging Face model directory: `Some` when it holds `vocab.json` and
    /// `merges.txt`, `None` when it holds neither (the built-in vocabulary applies), an error
    /// naming the missing file when it holds only one.
    pub fn from_model_dir(dir: &Path) -> Result<Option<Self>> {
        let (vocab, merges) = (dir.join(VOCAB_FILE), dir.join(MERGES_FILE));
        match (vocab.is_file(), merges.is_file()) {
            (true, true) => Self::from_files(&vocab, &merges).map(Some),
            (false, false) => Ok(None),
            (true, false) => Err(HfError::tokenizer(
                &merges,
                format!("missing: {VOCAB_FILE} is there, so the BPE merges must be too"),
            )),
            (false, true) => Err(HfError::tokenizer(
                &vocab,
                format!("missing: {MERGES_FILE} is there, so the vocabulary must be too"),
            )),
        }
    }

    /// Reads a Hugging Face CLIP tokenizer: `vocab` (`vocab.json`, token → id, ids 0..n−1) and
    /// `merges` (`merges.txt`, an optional `#version` line, then one `left right` merge a line
    /// by rank). The special tokens are CLIP's, looked up in the vocabulary. A malformed file is
    /// a one-line error naming it.
    pub fn from_files(vocab: &Path, merges: &Path) -> Result<Self> {
        let tokens = read_vocab(vocab)?;
        let text = std::fs::read_to_string(merges).at(merges)?;
        let lines = merge_lines(&text).map_err(|message| HfError::tokenizer(merges, message))?;
        let pairs: Vec<(&str, &str)> = lines.iter().map(|&(_, a, b)| (a, b)).collect();
        Self::build(tokens, &pairs).map_err(|invalid| match invalid {
            Invalid::Vocab(message) => HfError::tokenizer(vocab, message),
            Invalid::Merge(rank, message) => {
                HfError::tokenizer(merges, format!("line {}: {message}", lines[rank].0))
            }
        })
    }

    /// Writes the tokenizer as Hugging Face's `CLIPTokenizer` reads it from a model directory:
    /// `vocab.json` (token → id, in id order), `merges.txt` (`#version: 0.2`, then the merges by
    /// rank), `tokenizer_config.json` (class, special tokens as `openai/clip-vit-base-patch32`
    /// has them, `model_max_length`) and `special_tokens_map.json`.
    pub fn save(&self, dir: &Path, model_max_length: usize) -> Result<()> {
        let mut vocab = String::from("{\n");
        for (id, token) in self.vocab.iter().enumerate() {
            let key = serde_json::Value::from(token.as_str());
            let comma = if id + 1 < self.vocab.len() { "," } else { "" };
            writeln!(vocab, "  {key}: {id}{comma}").expect("writing to a String cannot fail");
        }
        vocab.push_str("}\n");
        write_text(&dir.join(VOCAB_FILE), &vocab)?;
        let mut ranked: Vec<(u32, u32, u32)> =
            self.merges.iter().map(|(&(left, right), &(rank, _))| (rank, left, right)).collect();
        ranked.sort_unstable();
        let mut merges = format!("{MERGES_HEADER}\n");
        for (_, left, right) in ranked {
            let (left, right) = (&self.vocab[left as usize], &self.vocab[right as usize]);
            writeln!(merges, "{left} {right}").expect("writing to a String cannot fail");
        }
        write_text(&dir.join(MERGES_FILE), &merges)?;
        let [(start, _), (end, _)] = self.specials;
        let specials = serde_json::json!({
            "bos_token": start, "eos_token": end, "unk_token": end, "pad_token": end,
        });
        let mut config = specials.clone();
        config["tokenizer_class"] = "CLIPTokenizer".into();
        config["model_max_length"] = model_max_length.into();
        write_text(&dir.join(TOKENIZER_CONFIG_FILE), &pretty_json(&config))?;
        write_text(&dir.join(SPECIAL_TOKENS_FILE), &pretty_json(&specials))
    }

    /// Token strings by id (what Hugging Face writes as `vocab.json`).
    pub fn vocabulary(&self) -> &[String] {
        &self.vocab
    }

    /// The id of `<|startoftext|>`.
    pub fn start_of_text(&self) -> i64 {
        self.specials[0].1
    }

    /// The id of `<|endoftext|>`, also the padding token.
    pub fn end_of_text(&self) -> i64 {
        self.specials[1].1
    }

    /// The BPE ids of `text`, without start/end tokens and without truncation.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let mut ids = Vec::new();
        // Where each special token occurs next, searched again only once passed: one scan of
        // the text per special (searching both from every occurrence of either was quadratic in
        // a caption of many `<|endoftext|>`).
        let find = |special: &str, from: usize| text[from..].find(special).map(|at| at + from);
        let mut next = self.specials.map(|(special, _)| find(special, 0));
        let mut done = 0;
        loop {
            let first = (0..next.len()).filter_map(|i| next[i].map(|at| (at, i))).min();
            let Some((at, i)) = first else {
                self.encode_plain(&text[done..], &mut ids);
                return ids;
            };
            let (special, id) = self.specials[i];
            self.encode_plain(&text[done..at], &mut ids);
            ids.push(id);
            done = at + special.len();
            for (j, (other, _)) in self.specials.iter().enumerate() {
                if next[j].is_some_and(|at| at < done) {
                    next[j] = find(other, done);
                }
            }
        }
    }

    fn encode_plain(&self, text: &str, ids: &mut Vec<i64>) {
        if text.is_empty() {
            return;
        }
        let nfc: String = text.nfc().collect();
        let spaced = self.whitespace.replace_all(&nfc, " ");
        // Per character, as the `tokenizers` Lowercase normaliser does (no final-sigma context).
        let lower: String = spaced.chars().flat_map(char::to_lowercase).collect();
        for word in self.words.find_iter(&lower) {
            ids.extend(self.bpe(word.as_str().as_bytes()).into_iter().map(i64::from));
        }
    }

    /// Merges the byte characters of one word by rank, lowest first, left to right: the merge
    /// of lowest rank among the word's adjacent pairs is applied to every occurrence (left to
    /// right, not overlapping), then the next, as OpenAI's `simple_tokenizer.py` does.
    ///
    /// O(n log n) in the word's length: the pairs wait in a heap by (rank, position) over a
    /// linked list of symbols, and the pairs a merge creates join the heap only once every
    /// occurrence of that merge is done (so a hostile merges.txt whose later merges rank lower
    /// is applied in the same order as the reference). Rescanning the word after each merge
    /// took minutes for a 40,000-character word (found by the tokenizer fuzz target).
    fn bpe(&self, bytes: &[u8]) -> Vec<u32> {
        let Some((&last, init)) = bytes.split_last() else {
            return Vec::new();
        };
        let mut symbols: Vec<u32> = init.iter().map(|&b| self.byte_ids[usize::from(b)]).collect();
        symbols.push(self.byte_end_ids[usize::from(last)]);
        let n = symbols.len();
        // Linked list over positions: a merged-away symbol is unlinked, its position never reused.
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let rank_of = |left: u32, right: u32| self.merges.get(&(left, right)).map(|&(r, _)| r);
        let mut heap: BinaryHeap<Reverse<(u32, usize)>> = (0..n.saturating_sub(1))
            .filter_map(|i| rank_of(symbols[i], symbols[i + 1]).map(|r| Reverse((r, i))))
            .collect();
        let mut created = Vec::new();
        while let Some(&Reverse((rank, _))) = heap.peek() {
            // Every occurrence of the merge of this rank, left to right.
            while let Some(&Reverse((r, at))) = heap.peek() {
                if r != rank {
                    break;
                }
                heap.pop();
                let right_at = next[at];
                // Stale: the symbol or its neighbour changed since the pair was queued.
                if !alive[at] || right_at >= n || rank_of(symbols[at], symbols[right_at]) != Some(r)
                {
                    continue;
                }
                symbols[at] = self.merges[&(symbols[at], symbols[right_at])].1;
                alive[right_at] = false;
                next[at] = next[right_at];
                if next[at] < n {
                    prev[next[at]] = at;
                }
                created.push(at);
            }
            // The pairs the merges made, beside each merged symbol still alive.
            for at in created.drain(..) {
                if !alive[at] {
                    continue;
                }
                let before = prev[at];
                if before < n
                    && let Some(r) = rank_of(symbols[before], symbols[at])
                {
                    heap.push(Reverse((r, before)));
                }
                if next[at] < n
                    && let Some(r) = rank_of(symbols[at], symbols[next[at]])
                {
                    heap.push(Reverse((r, at)));
                }
            }
        }
        let mut word = Vec::with_capacity(n);
        let mut at = 0;
        while at < n {
            word.push(symbols[at]);
            at = next[at];
        }
        word
    }

    /// `<|startoftext|>` + the ids of `text` (truncated to `context − 2`) + `<|endoftext|>`,
    /// unpadded: what Hugging Face's tokenizer returns with `truncation=True, max_length=context`.
    pub fn encode_for_model(&self, text: &str, context: usize) -> Vec<i64> {
        let mut ids = self.encode(text);
        ids.truncate(context.saturating_sub(2));
        let mut out = Vec::with_capacity(ids.len() + 2);
        out.push(self.start_of_text());
        out.extend(ids);
        out.push(self.end_of_text());
        out
    }

    /// A batch as a row-major `[texts, width]` id matrix, padded with `<|endoftext|>` to the
    /// longest sequence (at most `context`), and its width.
    pub fn batch<S: AsRef<str>>(&self, texts: &[S], context: usize) -> (Vec<i64>, usize) {
        let rows: Vec<Vec<i64>> =
            texts.iter().map(|t| self.encode_for_model(t.as_ref(), context)).collect();
        let width = rows.iter().map(Vec::len).max().unwrap_or(2);
        let mut ids = Vec::with_capacity(rows.len() * width);
        for row in rows {
            let pad = width - row.len();
            ids.extend(row);
            ids.extend(std::iter::repeat_n(self.end_of_text(), pad));
        }
        (ids, width)
    }
}

/// The vocabulary of a `vocab.json`: token strings by id, the ids numbering them 0..n−1.
fn read_vocab(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).at(path)?;
    let map: HashMap<String, u32> = serde_json::from_str(&text)
        .map_err(|e| HfError::tokenizer(path, format!("not a JSON object of token → id: {e}")))?;
    let mut by_id: Vec<(u32, String)> = map.into_iter().map(|(token, id)| (id, token)).collect();
    by_id.sort_unstable();
    let mut vocab = Vec::with_capacity(by_id.len());
    for (id, token) in by_id {
        let expected = vocab.len();
        if id as usize != expected {
            let message = match vocab.last() {
                Some(previous) if id as usize + 1 == expected => {
                    format!("id {id} is given to both `{previous}` and `{token}`")
                }
                _ => format!("no token has id {expected}: the ids must run 0..n−1 without gaps"),
            };
            return Err(HfError::tokenizer(path, message));
        }
        vocab.push(token);
    }
    Ok(vocab)
}

/// The merges of a `merges.txt` as (line number, left, right), by rank. Like the `tokenizers`
/// library, skips `#version` lines and takes each other line as exactly two tokens
/// separated by one space.
fn merge_lines(text: &str) -> std::result::Result<Vec<(usize, &str, &str)>, String> {
    let mut merges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("#version") {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(left), Some(right), None) if !left.is_empty() && !right.is_empty() => {
                merges.push((i + 1, left, right));
            }
            _ => {
                return Err(format!(
                    "line {}: expected two tokens separated by one space, found {line:?}",
                    i + 1
                ));
            }
        }
    }
    Ok(merges)
}

static WORDS: OnceLock<Regex> = OnceLock::new();
static WHITESPACE: OnceLock<Regex> = OnceLock::new();

/// `pattern` compiled once per process and shared by every tokenizer: compiling CLIP's Unicode
/// classes costs milliseconds, and each `Regex` value warms its own lazy DFA (a clone starts
/// cold), which made reading a tokenizer's files and encoding one caption cost about 8 ms.
fn compiled(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("valid pattern"))
}

fn pretty_json(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).expect("a JSON value serialises") + "\n"
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    Ok(std::fs::write(path, text).at(path)?)
}

impl Default for Tokenizer {
    fn default() -> Self {
        Tokenizer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_has_clip_layout() {
        let t = Tokenizer::new();
        assert_eq!(t.vocabulary().len(), VOCAB_SIZE);
        assert_eq!(t.vocabulary()[0], "!");
        assert_eq!(t.vocabulary()[256], "!</w>");
        assert_eq!(t.vocabulary()[START_OF_TEXT as usize], "<|startoftext|>");
    }

    #[test]
    fn encodes_with_start_end_and_truncation() {
        let t = Tokenizer::new();
        let ids = t.encode_for_model("a photo of a cat", CONTEXT_LENGTH);
        assert_eq!(ids.first(), Some(&START_OF_TEXT));
        assert_eq!(ids.last(), Some(&END_OF_TEXT));
        assert_eq!(ids.len(), 7, "{ids:?}");
        let long = "word ".repeat(200);
        assert_eq!(t.encode_for_model(&long, CONTEXT_LENGTH).len(), CONTEXT_LENGTH);
        assert_eq!(t.encode("A  Photo"), t.encode("a photo"));
        // Special tokens written in the text, however many and however packed.
        let a = t.encode("a")[0];
        let specials = "<|endoftext|>a<|startoftext|><|endoftext|><|endoftext|>".repeat(3);
        let expected = [END_OF_TEXT, a, START_OF_TEXT, END_OF_TEXT, END_OF_TEXT].repeat(3);
        assert_eq!(t.encode(&specials), expected);
        assert!(!t.encode("<|endoftext|").contains(&END_OF_TEXT), "not a special without `>`");
        let (batch, width) = t.batch(&["a", "a photo of a cat"], CONTEXT_LENGTH);
        assert_eq!((batch.len(), width), (14, 7));
        assert_eq!(batch[3..7], [END_OF_TEXT; 4]);
    }

    /// A seven-token vocabulary with one merge (`a` + `b</w>`), as Hugging Face files.
    const TINY_VOCAB: &str = r#"{"a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "ab</w>": 4,
        "<|startoftext|>": 5, "<|endoftext|>": 6}"#;
    const TINY_MERGES: &str = "#version: 0.2\na b</w>\n";

    /// Writes `vocab` and `merges` into a fresh directory and reads the tokenizer back.
    fn read_tiny(vocab: &str, merges: &str) -> (tempfile::TempDir, Result<Option<Tokenizer>>) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(VOCAB_FILE), vocab).expect("vocab");
        std::fs::write(dir.path().join(MERGES_FILE), merges).expect("merges");
        let tokenizer = Tokenizer::from_model_dir(dir.path());
        (dir, tokenizer)
    }

    /// The error of reading `vocab` + `merges`, checked to be one line that starts with the
    /// path of `file`.
    fn tiny_error(vocab: &str, merges: &str, file: &str) -> String {
        let (dir, tokenizer) = read_tiny(vocab, merges);
        let err = tokenizer.expect_err("malformed").to_string();
        let path = dir.path().join(file).display().to_string();
        assert!(err.starts_with(&format!("{path}: ")) && !err.contains('\n'), "{err}");
        err
    }

    /// The merge loop as OpenAI's `simple_tokenizer.py` writes it: find the lowest-ranked pair,
    /// merge every occurrence, rescan. Quadratic; the reference for [`Tokenizer::bpe`].
    fn bpe_rescanning(t: &Tokenizer, bytes: &[u8]) -> Vec<u32> {
        let Some((&last, init)) = bytes.split_last() else {
            return Vec::new();
        };
        let mut word: Vec<u32> = init.iter().map(|&b| t.byte_ids[usize::from(b)]).collect();
        word.push(t.byte_end_ids[usize::from(last)]);
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|p| t.merges.get(&(p[0], p[1])).map(|&(rank, _)| (rank, p[0], p[1])))
                .min();
            let Some((_, left, right)) = best else { break };
            let merged = t.merges[&(left, right)].1;
            let mut next = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == left && word[i + 1] == right {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(word[i]);
                    i += 1;
                }
            }
            word = next;
        }
        word
    }

    #[test]
    fn heap_merging_equals_rescanning() {
        // Words of CLIP's vocabulary and random ones (bytes from a small alphabet, so merges
        // apply often), through the built-in merges and through a merges file whose ranks
        // contradict the order tokens are built in (a later merge ranked first).
        let built_in = Tokenizer::shared();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = move |below: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % below
        };
        let alphabet = b"aabcdeeilnorst' \xc3\xa9";
        let mut words: Vec<Vec<u8>> = ["photograph", "aaaaaaa", "abababab", "x", "", "élève"]
            .iter()
            .map(|w| w.as_bytes().to_vec())
            .collect();
        for _ in 0..300 {
            let len = 1 + random(40) as usize;
            words
                .push((0..len).map(|_| alphabet[random(alphabet.len() as u64) as usize]).collect());
        }
        let vocab = r#"{"a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "ab": 4, "ba": 5, "aba": 6,
            "ab</w>": 7, "bab</w>": 8, "abab</w>": 9, "<|startoftext|>": 10, "<|endoftext|>": 11}"#;
        // `ab a` and `ab ab</w>` use tokens made by later merges; `ba b</w>` ranks below `b a`.
        let merges = "#version: 0.2\nab a\na b\nab ab</w>\na b</w>\nba b</w>\nb a\naba b</w>\n";
        let (_dir, hostile) = read_tiny(vocab, merges);
        let hostile = hostile.expect("valid files").expect("both files");
        // Every `a b` first (ab ab a</w>); `ab a`, made possible by the first, waits its turn.
        assert_eq!(hostile.bpe(b"ababa"), [4, 4, 2]);
        for word in &words {
            assert_eq!(built_in.bpe(word), bpe_rescanning(built_in, word), "{word:?}");
            let ab: Vec<u8> = word.iter().map(|b| if b % 2 == 0 { b'a' } else { b'b' }).collect();
            assert_eq!(hostile.bpe(&ab), bpe_rescanning(&hostile, &ab), "{ab:?}");
        }
    }

    #[test]
    fn reads_a_tokenizer_from_hugging_face_files() {
        let (_dir, tokenizer) = read_tiny(TINY_VOCAB, TINY_MERGES);
        let t = tokenizer.expect("valid files").expect("both files present");
        assert_eq!((t.start_of_text(), t.end_of_text()), (5, 6));
        assert_eq!(t.encode("AB ba"), [4, 1, 2]);
        // Bytes without a token of their own become the unknown token, `<|endoftext|>`.
        assert_eq!(t.encode_for_model("c", CONTEXT_LENGTH), [5, 6, 6]);
        assert_eq!(t.batch(&["ab", "ba"], CONTEXT_LENGTH), (vec![5, 4, 6, 6, 5, 1, 2, 6], 4));
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(Tokenizer::from_model_dir(empty.path()).expect("no files").is_none());
    }

    #[test]
    fn malformed_tokenizer_files_are_errors_naming_the_file() {
        let err = tiny_error("[1, 2]", TINY_MERGES, VOCAB_FILE);
        assert!(err.contains("tokenizer: not a JSON object of token → id"), "{err}");
        let err = tiny_error(&TINY_VOCAB.replace("\"b\": 1", "\"b\": 0"), TINY_MERGES, VOCAB_FILE);
        assert!(err.contains("id 0 is given to both"), "{err}");
        let err = tiny_error(&TINY_VOCAB.replace("\"b\": 1", "\"b\": 9"), TINY_MERGES, VOCAB_FILE);
        assert!(err.contains("no token has id 1"), "{err}");
        // Tokens are quoted as the file has them: a newline in one is escaped (one line).
        let err =
            tiny_error(&TINY_VOCAB.replace("\"b\": 1", "\"b\\nc\": 0"), TINY_MERGES, VOCAB_FILE);
        assert!(err.contains(r"b\nc"), "{err}");
        let err =
            tiny_error(&TINY_VOCAB.replace("<|endoftext|>", "<|end|>"), TINY_MERGES, VOCAB_FILE);
        assert!(err.contains("no token `<|endoftext|>`"), "{err}");
        let err = tiny_error(TINY_VOCAB, "#version: 0.2\na b</w>\na  b\n", MERGES_FILE);
        assert!(err.contains("line 3: expected two tokens separated by one space"), "{err}");
        let err = tiny_error(TINY_VOCAB, "#version: 0.2\na b</w>\nb a</w>\n", MERGES_FILE);
        assert!(err.contains("line 3: `b a</w>`: `ba</w>` is not in vocab.json"), "{err}");
        let err = tiny_error("\u{feff}{\"a\": 0}", TINY_MERGES, VOCAB_FILE);
        assert!(err.contains("not a JSON object"), "{err}");
        let (dir, _) = read_tiny(TINY_VOCAB, TINY_MERGES);
        std::fs::write(dir.path().join(VOCAB_FILE), b"{\"\xff\": 0}").expect("bad UTF-8");
        let err = Tokenizer::from_model_dir(dir.path()).expect_err("bad UTF-8").to_string();
        assert!(err.starts_with(&dir.path().join(VOCAB_FILE).display().to_string()), "{err}");
        std::fs::remove_file(dir.path().join(MERGES_FILE)).expect("remove");
        let err = Tokenizer::from_model_dir(dir.path()).expect_err("no merges").to_string();
        let merges = dir.path().join(MERGES_FILE).display().to_string();
        assert!(err.starts_with(&format!("{merges}: tokenizer: missing")), "{err}");
    }
}
