//! The tokenizer files of a model directory (`vocab.json`, `merges.txt`, `tokenizer_config.json`,
//! `special_tokens_map.json`): what we write loads in transformers' `CLIPTokenizer` with the same
//! ids as ours, reads back into the same tokenizer, and a directory's own files are honoured.
//!
//! The transformers check runs the pinned peers venv (`$BRAINPIPE_REF_PYTHON`, made and set by
//! `make test`). Without it, or without `transformers` there, that test fails when `CI` is set and is
//! skipped with a message otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use brainpipe_clip::{
    CONTEXT_LENGTH, ClipConfig, Embedder, LoadedClip, MERGES_FILE, Precision, SPECIAL_TOKENS_FILE,
    TOKENIZER_CONFIG_FILE, Tokenizer, VOCAB_FILE, VOCAB_SIZE,
};
use tch::Device;

/// The files [`Tokenizer::save`] writes.
const TOKENIZER_FILES: [&str; 4] =
    [VOCAB_FILE, MERGES_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_FILE];

/// Captions that exercise each step of the text processing, one of them over 77 tokens.
fn captions() -> Vec<String> {
    let mut captions: Vec<String> = [
        "A photo of a cat.",
        "",
        "Two dogs, three cats & a bird!!! (really?) -- 42% of 1,000",
        "Straße — naïve café, Ελληνικά, Кириллица, 日本語のテキスト 🐱🚲 ﬁne Ｆｕｌｌ",
        "e\u{301}cole vs école, tab\there\nnew line   and\u{a0}nbsp",
        "it's we're they've I'm you'll he'd DON'T",
        "a caption with <|endoftext|> inside and <|startoftext|> too",
    ]
    .map(str::to_owned)
    .into();
    captions.push("the quick brown fox jumps over the lazy dog, ".repeat(12));
    captions
}

/// The peers venv's interpreter when it can import `transformers`; `None` (skip) otherwise, and a
/// failure when `CI` is set: under CI a missing oracle never passes silently.
fn transformers_python(test: &str) -> Option<PathBuf> {
    let ci = std::env::var_os("CI").is_some();
    let python = brainpipe_core::reference_python(test)?;
    let imports = Command::new(&python)
        .args(["-c", "import transformers"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !imports {
        assert!(!ci, "{test}: CI is set but {} cannot import transformers", python.display());
        eprintln!("skipped {test}: {} cannot import transformers", python.display());
        return None;
    }
    Some(python)
}

/// Loads `dir` with `CLIPTokenizer.from_pretrained` and tokenises the captions of stdin, one at a
/// time (truncated at `model_max_length`) and as one padded batch.
const HF_TOKENIZE: &str = r#"
import json, sys
from transformers import CLIPTokenizer
tok = CLIPTokenizer.from_pretrained(sys.argv[1])
captions = json.load(sys.stdin)
print(json.dumps({
    "specials": [tok.bos_token, tok.eos_token, tok.unk_token, tok.pad_token],
    "model_max_length": tok.model_max_length,
    "ids": [tok(c, truncation=True)["input_ids"] for c in captions],
    "padded": tok(captions, truncation=True, padding=True)["input_ids"],
}))
"#;

fn hf_tokenize(python: &Path, dir: &Path, captions: &[String]) -> serde_json::Value {
    let mut child = Command::new(python)
        .args(["-c", HF_TOKENIZE])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let input = serde_json::to_vec(captions).expect("captions as JSON");
    child.stdin.take().expect("stdin").write_all(&input).expect("write captions");
    let out = child.wait_with_output().expect("python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "CLIPTokenizer.from_pretrained failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("JSON from python")
}

fn ids_of(value: &serde_json::Value) -> Vec<Vec<i64>> {
    let rows = value.as_array().expect("rows");
    rows.iter()
        .map(|row| row.as_array().expect("ids").iter().filter_map(|v| v.as_i64()).collect())
        .collect()
}

#[test]
fn written_tokenizer_loads_in_transformers_with_our_ids() {
    let Some(python) = transformers_python("written_tokenizer_loads_in_transformers_with_our_ids")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = Tokenizer::shared();
    ours.save(dir.path(), CONTEXT_LENGTH).expect("write the tokenizer");
    let captions = captions();
    let hf = hf_tokenize(&python, dir.path(), &captions);
    let end = "<|endoftext|>";
    assert_eq!(hf["specials"], serde_json::json!(["<|startoftext|>", end, end, end]));
    assert_eq!(hf["model_max_length"], CONTEXT_LENGTH);
    let hf_ids = ids_of(&hf["ids"]);
    for (caption, want) in captions.iter().zip(&hf_ids) {
        assert_eq!(&ours.encode_for_model(caption, CONTEXT_LENGTH), want, "{caption:?}");
    }
    assert_eq!(hf_ids.last().map(Vec::len), Some(CONTEXT_LENGTH), "the long caption truncates");
    let (padded, width) = ours.batch(&captions, CONTEXT_LENGTH);
    let padded: Vec<Vec<i64>> = padded.chunks(width).map(<[i64]>::to_vec).collect();
    assert_eq!(padded, ids_of(&hf["padded"]), "padding with the pad token");
}

#[test]
fn tokenizer_read_back_from_its_files_is_the_built_in_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let built_in = Tokenizer::shared();
    built_in.save(dir.path(), CONTEXT_LENGTH).expect("write the tokenizer");
    let merges = std::fs::read_to_string(dir.path().join(MERGES_FILE)).expect("merges.txt");
    assert_eq!(merges.lines().next(), Some("#version: 0.2"));
    assert_eq!(merges.lines().count(), 1 + VOCAB_SIZE - 512 - 2, "48,894 merges");
    let read = Tokenizer::from_model_dir(dir.path()).expect("read back").expect("files present");
    assert_eq!(read.vocabulary(), built_in.vocabulary());
    let fixture = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../../tests/fixtures/clip");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture.join("captions.json")).expect("captions"),
    )
    .expect("json");
    let fixture_captions = json["captions"].as_array().expect("captions").iter();
    let mut all = captions();
    all.extend(fixture_captions.filter_map(|c| c.as_str()).map(str::to_owned));
    for caption in &all {
        assert_eq!(
            read.encode_for_model(caption, CONTEXT_LENGTH),
            built_in.encode_for_model(caption, CONTEXT_LENGTH),
            "{caption:?}"
        );
    }
    let again = tempfile::tempdir().expect("tempdir");
    read.save(again.path(), CONTEXT_LENGTH).expect("write again");
    for file in TOKENIZER_FILES {
        let bytes = |d: &Path| std::fs::read(d.join(file)).expect("tokenizer file");
        assert!(bytes(dir.path()) == bytes(again.path()), "{file} differs when written again");
    }
}

#[test]
fn a_model_directory_with_its_own_tokenizer_files_uses_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ClipConfig::small();
    LoadedClip::new(&config, Device::Cpu).save(dir.path()).expect("save");
    for file in TOKENIZER_FILES {
        assert!(dir.path().join(file).is_file(), "{file} written beside the weights");
    }
    let tokenizer_config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(TOKENIZER_CONFIG_FILE)).expect("config"),
    )
    .expect("json");
    assert_eq!(tokenizer_config["model_max_length"], config.text_config.context_length());
    // A checkpoint whose BPE knows only its first 1,000 merges splits long words further.
    let merges_path = dir.path().join(MERGES_FILE);
    let merges = std::fs::read_to_string(&merges_path).expect("merges.txt");
    let kept: Vec<&str> = merges.lines().take(1 + 1000).collect();
    std::fs::write(&merges_path, kept.join("\n") + "\n").expect("fewer merges");
    let embedder = Embedder::load(dir.path(), Device::Cpu, Precision::Fp32).expect("load");
    let caption = "a photograph of a giraffe";
    let own = embedder.clip().tokenizer.encode(caption);
    assert_ne!(own, Tokenizer::shared().encode(caption), "the directory's merges apply");
    let from_files = Tokenizer::from_model_dir(dir.path()).expect("read").expect("present");
    assert_eq!(own, from_files.encode(caption));
    std::fs::write(&merges_path, "#version: 0.2\nnot-a-merge\n").expect("malformed merges");
    let err = LoadedClip::load(dir.path(), Device::Cpu).expect_err("malformed").to_string();
    let prefix = format!("{}: tokenizer: line 2:", merges_path.display());
    assert!(err.starts_with(&prefix) && !err.contains('\n'), "{err}");
}
