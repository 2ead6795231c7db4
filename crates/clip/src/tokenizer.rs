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
//! Deviation: OpenAI's original cleans text with `ftfy` and unescapes HTML entities; transformers 5
//! does neither, and parity with it is what the tests check.

use std::collections::HashMap;
use std::io::Read;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

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
const SPECIALS: [(&str, i64); 2] =
    [("<|startoftext|>", START_OF_TEXT), ("<|endoftext|>", END_OF_TEXT)];

/// CLIP's tokenizer. Cheap to share (`&Tokenizer` is `Sync`); build it once.
pub struct Tokenizer {
    /// Token string → id (for [`Tokenizer::vocabulary`]).
    vocab: Vec<String>,
    /// (left id, right id) → (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Id of each byte's character, and of the same character ending a word.
    byte_ids: [u32; 256],
    byte_end_ids: [u32; 256],
    words: Regex,
    whitespace: Regex,
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
        static SHARED: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
        SHARED.get_or_init(Tokenizer::new)
    }

    fn from_merges_text(text: &str) -> Self {
        let merges: Vec<(&str, &str)> =
            text.lines().skip(1).take(MERGES).filter_map(|line| line.split_once(' ')).collect();
        let byte_chars = bytes_to_unicode();
        let mut vocab: Vec<String> = byte_chars.iter().map(|(_, c)| c.to_string()).collect();
        vocab.extend(byte_chars.iter().map(|(_, c)| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.extend(SPECIALS.iter().map(|(s, _)| (*s).to_owned()));
        // A later duplicate wins, as in Python's dict(zip(vocab, range(len(vocab)))).
        let ids: HashMap<&str, u32> =
            vocab.iter().enumerate().map(|(i, s)| (s.as_str(), i as u32)).collect();
        let mut byte_ids = [0u32; 256];
        let mut byte_end_ids = [0u32; 256];
        for (b, c) in &byte_chars {
            byte_ids[usize::from(*b)] = ids[c.to_string().as_str()];
            byte_end_ids[usize::from(*b)] = ids[format!("{c}</w>").as_str()];
        }
        let mut merge_map = HashMap::with_capacity(merges.len());
        for (rank, (a, b)) in merges.iter().enumerate() {
            let (Some(&left), Some(&right), Some(&merged)) =
                (ids.get(a), ids.get(b), ids.get(format!("{a}{b}").as_str()))
            else {
                continue;
            };
            merge_map.entry((left, right)).or_insert((rank as u32, merged));
        }
        Tokenizer {
            merges: merge_map,
            vocab,
            byte_ids,
            byte_end_ids,
            words: Regex::new(WORD_PATTERN).expect("valid pattern"),
            whitespace: Regex::new(r"\s+").expect("valid pattern"),
        }
    }

    /// Token strings by id (what Hugging Face writes as `vocab.json`).
    pub fn vocabulary(&self) -> &[String] {
        &self.vocab
    }

    /// The BPE ids of `text`, without start/end tokens and without truncation.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let mut ids = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next = SPECIALS
                .iter()
                .filter_map(|(s, id)| rest.find(s).map(|at| (at, *s, *id)))
                .min_by_key(|(at, _, _)| *at);
            match next {
                Some((at, special, id)) => {
                    self.encode_plain(&rest[..at], &mut ids);
                    ids.push(id);
                    rest = &rest[at + special.len()..];
                }
                None => {
                    self.encode_plain(rest, &mut ids);
                    rest = "";
                }
            }
        }
        ids
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

    /// Merges the byte characters of one word by rank, lowest first, left to right.
    fn bpe(&self, bytes: &[u8]) -> Vec<u32> {
        let Some((&last, init)) = bytes.split_last() else {
            return Vec::new();
        };
        let mut word: Vec<u32> = init.iter().map(|&b| self.byte_ids[usize::from(b)]).collect();
        word.push(self.byte_end_ids[usize::from(last)]);
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|pair| {
                    self.merges.get(&(pair[0], pair[1])).map(|&(rank, _)| (rank, pair[0], pair[1]))
                })
                .min();
            let Some((_, left, right)) = best else { break };
            let merged = self.merges[&(left, right)].1;
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

    /// `<|startoftext|>` + the ids of `text` (truncated to `context − 2`) + `<|endoftext|>`,
    /// unpadded: what Hugging Face's tokenizer returns with `truncation=True, max_length=context`.
    pub fn encode_for_model(&self, text: &str, context: usize) -> Vec<i64> {
        let mut ids = self.encode(text);
        ids.truncate(context.saturating_sub(2));
        let mut out = Vec::with_capacity(ids.len() + 2);
        out.push(START_OF_TEXT);
        out.extend(ids);
        out.push(END_OF_TEXT);
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
            ids.extend(std::iter::repeat_n(END_OF_TEXT, pad));
        }
        (ids, width)
    }
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
        let (batch, width) = t.batch(&["a", "a photo of a cat"], CONTEXT_LENGTH);
        assert_eq!((batch.len(), width), (14, 7));
        assert_eq!(batch[3..7], [END_OF_TEXT; 4]);
    }
}
