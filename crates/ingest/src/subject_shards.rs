//! Ingest stages in shards, one per subject (the tasks of a Slurm job array), and the merge that
//! writes the stage's outputs from them: the bytes of the unsharded run.
//!
//! Subjects are independent in every importer (each gets its own files, written by the same
//! code whichever process runs it), so shard `k` runs the stage's preparation (everything the
//! subjects share: listing the inputs, reading masks, generating the study's world) and then
//! subject `k` alone, into a shard directory laid out as the stage's outputs, plus
//! `subject.json` (which subject, of how many, and its result). The merge runs the preparation
//! again, writes the outputs the subjects share, moves each shard's subject files into place in
//! subject order and builds the stage's notes from the shards' results, as the whole run
//! builds them from its subjects'.

use std::fs;
use std::path::{Path, PathBuf};

use brainpipe_core::{Context, IoContext};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{IngestError, Result};

/// Which part of an ingest stage's work one process does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Part<'a> {
    /// Every subject and the shared outputs: the stage's `run`.
    Whole,
    /// Subject `index` of `count` alone, into a shard directory.
    Subject {
        /// 0-based subject, in the stage's subject order.
        index: usize,
        /// Subjects in all (the shard count the driver planned).
        count: usize,
    },
    /// The stage's outputs from these shard directories, subject 0 first.
    Merge(&'a [PathBuf]),
}

impl Part<'_> {
    /// Whether this part writes the outputs every subject shares (all but a subject shard).
    pub(crate) fn writes_shared(&self) -> bool {
        !matches!(self, Part::Subject { .. })
    }
}

/// The record a subject shard writes beside its files.
pub(crate) const SUBJECT_FILE: &str = "subject.json";

/// Version of [`SUBJECT_FILE`]'s layout.
const SUBJECT_FORMAT: u32 = 1;

/// What a subject shard records: which subject it holds and the stage's per-subject result.
#[derive(Debug, Serialize, Deserialize)]
struct SubjectRecord {
    format: u32,
    index: usize,
    count: usize,
    subject: String,
    result: Value,
}

/// Subject `index` of `subjects` (listed from `source`), which must number `count` (the inputs
/// may have changed since the shards were planned).
pub(crate) fn pick<'s, T>(
    subjects: &'s [T],
    (index, count): (usize, usize),
    source: &Path,
) -> Result<&'s T> {
    if subjects.len() != count || index >= count {
        return Err(IngestError::Shard(format!(
            "shard {index} of {count}: {} holds {} subjects",
            source.display(),
            subjects.len()
        )));
    }
    Ok(&subjects[index])
}

/// Writes `dir/subject.json`: subject `subject`, shard `index` of `count`, with `result`.
pub(crate) fn write_record(
    dir: &Path,
    (index, count): (usize, usize),
    subject: &str,
    result: Value,
) -> Result<()> {
    let record =
        SubjectRecord { format: SUBJECT_FORMAT, index, count, subject: subject.to_owned(), result };
    let path = dir.join(SUBJECT_FILE);
    let json = serde_json::to_vec_pretty(&record)
        .map_err(|e| IngestError::Shard(format!("{}: {e}", path.display())))?;
    fs::write(&path, json).at(&path)?;
    Ok(())
}

/// Reads each shard's record and checks that shard `k` holds subject `k` of `subjects`, named
/// as the merge lists it; returns the results in subject order. Nothing is moved before every
/// shard passed.
pub(crate) fn read_records(shards: &[PathBuf], subjects: &[String]) -> Result<Vec<Value>> {
    if shards.len() != subjects.len() {
        return Err(IngestError::Shard(format!(
            "a merge of {} shards for {} subjects",
            shards.len(),
            subjects.len()
        )));
    }
    let mut results = Vec::with_capacity(shards.len());
    for (index, (dir, subject)) in shards.iter().zip(subjects).enumerate() {
        let path = dir.join(SUBJECT_FILE);
        let bad = |message: String| IngestError::Shard(format!("{}: {message}", path.display()));
        let bytes = fs::read(&path).at(&path)?;
        let record: SubjectRecord = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("not a subject shard record: {e}")))?;
        if record.format != SUBJECT_FORMAT
            || record.index != index
            || record.count != subjects.len()
            || &record.subject != subject
        {
            return Err(bad(format!(
                "shard of subject {} ({} of {}, format {}), expected {subject} ({index} of {}, format {SUBJECT_FORMAT})",
                record.subject.escape_debug(),
                record.index,
                record.count,
                record.format,
                subjects.len()
            )));
        }
        results.push(record.result);
    }
    Ok(results)
}

/// Moves every file of output folder `port` of the shard directory `shard` into that folder
/// of `ctx`'s output directory (created), keeping names; a name already there (two shards
/// writing one file) is refused. Moving (a rename within the cache's file system, a copy
/// elsewhere) keeps the files' bytes and rewrites no large volume; the shards are removed after
/// the merge anyway.
pub(crate) fn move_files(ctx: &Context, port: &str, shard: &Path) -> Result<()> {
    let to = ctx.output(port);
    let from = shard.join(to.strip_prefix(ctx.out_dir()).unwrap_or(&to));
    fs::create_dir_all(&to).at(&to)?;
    let mut names: Vec<PathBuf> = fs::read_dir(&from)
        .at(&from)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .at(&from)?;
    names.sort();
    for source in names {
        let Some(name) = source.file_name() else { continue };
        if !source.is_file() {
            return Err(IngestError::Shard(format!(
                "{}: not a file; a subject shard holds files only",
                source.display()
            )));
        }
        let target = to.join(name);
        if fs::symlink_metadata(&target).is_ok() {
            return Err(IngestError::Shard(format!("{}: written by two shards", target.display())));
        }
        if fs::rename(&source, &target).is_err() {
            fs::copy(&source, &target).at(&source)?;
        }
    }
    Ok(())
}
