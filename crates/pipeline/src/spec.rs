//! The pipeline YAML file: its schema, and where in the text each part of it sits.
//!
//! Parsing goes through `serde_yaml_ng` (a maintained fork of the archived `serde_yaml`), whose
//! errors carry line and column. Errors found after parsing (a dangling reference, a cycle) are
//! located by [`locate`], which re-reads the text with a probe that fails exactly at the node in
//! question, so the fork's own error position tells where that node is: exact positions, without a
//! second YAML parser.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A pipeline file as written.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Pipeline name (names the `runs/` folder and the plan state).
    pub name: String,
    /// Stages by id, in file order.
    pub stages: StageMap,
    /// Where stages run (`local` or `slurm`) and how batch jobs are submitted.
    #[serde(default)]
    pub executor: Option<crate::executor::ExecutorSpec>,
}

/// Stages by id in file order; a repeated id is an error.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct StageMap(pub Vec<(String, StageSpec)>);

/// One stage as written: `uses` a built-in stage or `run`s an external command.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Name of a built-in stage, e.g. `features.roi`.
    #[serde(default)]
    pub uses: Option<String>,
    /// An external command template: `{inputs.x}`, `{outputs.y}`, `{params.k}`.
    #[serde(default)]
    pub run: Option<String>,
    /// Params (a mapping).
    #[serde(default)]
    pub with: Option<Value>,
    /// Inputs: port → `stage.port` or a path relative to the pipeline file; a list input takes a
    /// YAML list of them (element `i` becomes input key `port#i`).
    #[serde(default)]
    pub inputs: PortMap,
    /// For `run:` stages: the outputs the command creates.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// For `run:` stages: files whose content goes into the cache key (scripts, configs).
    #[serde(default)]
    pub deps: Vec<String>,
    /// What the stage's batch job asks the cluster for; not part of the cache key.
    #[serde(default)]
    pub resources: Option<crate::executor::Resources>,
}

/// Inputs in file order: `(key, reference)`, where a list's elements have keys `port#0`,
/// `port#1`, … (see `brainpipe_core::list_input_key`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PortMap(pub Vec<(String, String)>);

/// One input as written: a reference, or a list of them.
#[derive(Deserialize)]
#[serde(untagged, expecting = "`stage.port`, a path, or a list of them")]
enum PortValue {
    One(String),
    Many(Vec<String>),
}

/// A position in the pipeline file, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// A pipeline-file error: one line, `file:line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    /// The pipeline file.
    pub file: PathBuf,
    /// Where, when known.
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Messages quote the file's text (a misspelt key, a value): control characters in it
        // are escaped, so the error stays one line whatever the file holds.
        let message = brainpipe_core::one_line(&self.message);
        match self.location {
            Some(loc) => {
                write!(f, "{}:{}:{}: {}", self.file.display(), loc.line, loc.column, message)
            }
            None => write!(f, "{}: {}", self.file.display(), message),
        }
    }
}

impl std::error::Error for SpecError {}

/// Parses pipeline text. Errors name `file:line:col`.
pub fn parse(file: &Path, text: &str) -> Result<PipelineSpec, SpecError> {
    serde_yaml_ng::from_str(text).map_err(|e| {
        let location = e.location().map(|l| Location { line: l.line(), column: l.column() });
        let mut message = e.to_string();
        // The fork appends " at line L column C"; we print the position up front instead.
        if let Some(cut) = message.rfind(" at line ") {
            message.truncate(cut);
        }
        if message.is_empty() || text.trim().is_empty() {
            message = "empty pipeline file: expected `name:` and `stages:`".to_owned();
        }
        SpecError { file: file.to_path_buf(), location, message }
    })
}

/// One step of a path into the YAML document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// The `n`-th (0-based) occurrence of a mapping key.
    Key(&'a str, usize),
    /// A sequence element.
    Index(usize),
}

/// Where the node at `path` starts (for a key step, its value), or `None` if there is no such node.
pub fn locate(text: &str, path: &[Step<'_>]) -> Option<Location> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (Probe { path }).deserialize(de) {
        Err(e) if e.to_string().contains(FOUND) => {
            e.location().map(|l| Location { line: l.line(), column: l.column() })
        }
        _ => None,
    }
}

const FOUND: &str = "\u{0}found";

struct Probe<'p, 'a> {
    path: &'p [Step<'a>],
}

impl<'de> DeserializeSeed<'de> for Probe<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.leaf()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.leaf()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        let mut seen = 0;
        while let Some(key) = map.next_key::<KeyText>()? {
            match first {
                Step::Key(name, nth) if key.0 == *name => {
                    if seen == *nth {
                        return map.next_value_seed(Probe { path: rest });
                    }
                    seen += 1;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        let mut index = 0;
        loop {
            if *first == Step::Index(index) {
                return seq.next_element_seed(Probe { path: rest }).map(|_| ());
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }
}

impl Probe<'_, '_> {
    fn leaf<E: de::Error>(self) -> Result<(), E> {
        if self.path.is_empty() { Err(E::custom(FOUND)) } else { Ok(()) }
    }
}

/// A mapping key read as text whatever its YAML type (`1:` and `true:` are keys too).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let value = serde_yaml_ng::Value::deserialize(de)?;
        Ok(KeyText(match value {
            serde_yaml_ng::Value::String(s) => s,
            other => serde_yaml_ng::to_string(&other).unwrap_or_default().trim().to_owned(),
        }))
    }
}

impl<'de> Deserialize<'de> for StageMap {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_map(OrderedMap::<StageSpec>::new("a mapping of stage ids to stages"))
            .map(StageMap)
    }
}

impl<'de> Deserialize<'de> for PortMap {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let entries = de.deserialize_map(OrderedMap::<PortValue>::new(
            "a mapping of input ports to `stage.port`, paths, or lists of them",
        ))?;
        let mut out = Vec::new();
        for (port, value) in entries {
            match value {
                PortValue::One(reference) => out.push((port, reference)),
                PortValue::Many(list) => out.extend(
                    list.into_iter()
                        .enumerate()
                        .map(|(i, r)| (brainpipe_core::list_input_key(&port, i), r)),
                ),
            }
        }
        Ok(PortMap(out))
    }
}

/// A mapping read in order, refusing repeated keys.
struct OrderedMap<T> {
    expecting: &'static str,
    marker: std::marker::PhantomData<T>,
}

impl<T> OrderedMap<T> {
    fn new(expecting: &'static str) -> Self {
        OrderedMap { expecting, marker: std::marker::PhantomData }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for OrderedMap<T> {
    type Value = Vec<(String, T)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries: Vec<(String, T)> = Vec::new();
        // A set beside the list: a scan of the list per key made 100,000 stages quadratic.
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                // Positioned by the caller through `locate` on the second occurrence.
                return Err(de::Error::custom(format!("{DUPLICATE}{key}")));
            }
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(entries)
    }
}

/// Marks a duplicate-key error so [`parse_located`] can point at the second occurrence.
pub(crate) const DUPLICATE: &str = "duplicate key ";

/// [`parse`], and for a repeated stage id or input port, the position of its second occurrence.
pub fn parse_located(file: &Path, text: &str) -> Result<PipelineSpec, SpecError> {
    parse(file, text).map_err(|mut err| {
        if let Some(key) =
            err.message.rsplit(DUPLICATE).next().filter(|_| err.message.contains(DUPLICATE))
        {
            let key = key.to_owned();
            let at_stage = locate(text, &[Step::Key("stages", 0), Step::Key(&key, 1)]);
            err.location = at_stage.or(err.location);
            err.message = format!("duplicate id `{key}`: each stage id and port may appear once");
        }
        err
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name: demo\nstages:\n  a: { run: \"touch {outputs.x}\", outputs: [x] }\n  b:\n    run: cat {inputs.i}\n    inputs:\n      i: a.x\n    outputs: [y, z]\n";

    #[test]
    fn errors_quoting_control_characters_stay_one_line() {
        // Found by fuzz/fuzz_targets/pipeline_yaml.rs: a misspelt key holding carriage returns
        // came back verbatim in serde's "unknown field" message.
        let text = "name: d\nstages:\n  a: { run: x, \"outp\\r\\nuts\": [o] }\n";
        let err = parse_located(Path::new("p.yaml"), text).expect_err("unknown field").to_string();
        assert!(!err.contains('\n') && !err.contains('\r'), "{err:?}");
        assert!(err.contains("`outp\\r\\nuts`"), "escaped: {err}");
    }

    #[test]
    fn parses_flow_and_block_styles() {
        let spec = parse(Path::new("p.yaml"), TEXT).expect("valid");
        assert_eq!(spec.name, "demo");
        assert_eq!(spec.stages.0.len(), 2);
        assert_eq!(spec.stages.0[1].1.inputs.0, vec![("i".to_owned(), "a.x".to_owned())]);
    }

    #[test]
    fn locates_nodes_in_both_styles() {
        let at = |path: &[Step<'_>]| locate(TEXT, path).map(|l| (l.line, l.column));
        assert_eq!(
            at(&[
                Step::Key("stages", 0),
                Step::Key("a", 0),
                Step::Key("outputs", 0),
                Step::Index(0)
            ]),
            Some((3, 44))
        );
        assert_eq!(
            at(&[
                Step::Key("stages", 0),
                Step::Key("b", 0),
                Step::Key("inputs", 0),
                Step::Key("i", 0)
            ]),
            Some((7, 10))
        );
        assert_eq!(
            at(&[
                Step::Key("stages", 0),
                Step::Key("b", 0),
                Step::Key("outputs", 0),
                Step::Index(1)
            ]),
            Some((8, 18))
        );
        assert_eq!(at(&[Step::Key("stages", 0), Step::Key("nope", 0)]), None);
    }

    #[test]
    fn unknown_key_has_position() {
        let text = "name: demo\nstages:\n  a:\n    run: x\n    ouputs: [y]\n";
        let err = parse(Path::new("p.yaml"), text).expect_err("typo");
        assert_eq!(err.location.map(|l| l.line), Some(5));
        assert!(err.message.contains("unknown field `ouputs`"), "{}", err.message);
        assert!(err.to_string().starts_with("p.yaml:5:"), "{err}");
    }

    #[test]
    fn duplicate_stage_id_points_at_the_second() {
        let text = "name: demo\nstages:\n  a: { run: x }\n  b: { run: y }\n  a: { run: z }\n";
        let err = parse_located(Path::new("p.yaml"), text).expect_err("dup");
        assert_eq!(err.location.map(|l| l.line), Some(5), "{err}");
        assert!(err.message.contains("duplicate id `a`"), "{err}");
    }
}
