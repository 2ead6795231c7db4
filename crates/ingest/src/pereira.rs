//! `ingest.pereira`: Pereira et al. 2018's per-subject MATLAB files → `scans`, with each column's
//! Gordon ROI recorded so `features` needs no atlas file.

use std::path::{Path, PathBuf};

use brainpipe_core::{ArtifactKind, Context, IoContext, Port, Stage, StageError};

use crate::error::{IngestError, Result};
use crate::scans::{ScansWriter, TrialInfo, VoxelGrid, file_name, for_each_subject};
use crate::subject_shards::Part;
use brainpipe_artifacts::mat::{MatValue, read_mat};

brainpipe_core::params! {
    /// Params of `ingest.pereira`.
    pub struct PereiraParams {
        /// Atlas whose ROI of each column is recorded (`meta.atlases` name, case-insensitive, or
        /// the suffix of `meta.roiMultimask<Atlas>` / `meta.roiColumns<Atlas>`). Pereira ships
        /// Gordon et al. 2016's 333 ROIs, which Brain2Word uses.
        pub atlas: String = "gordon".to_owned(),
        /// Voxel size in mm for the affine when `meta` has no `matrix` (Pereira: 2 mm isotropic).
        pub voxel_mm: f64 = 2.0,
    }
}

/// `ingest.pereira`: one subject per folder of `*_180concepts_{pictures,sentences,wordclouds}.mat`.
pub struct IngestPereira;

impl Stage for IngestPereira {
    type Params = PereiraParams;
    const NAME: &'static str = "ingest.pereira";
    const VERSION: u32 = 3;
    const SUMMARY: &'static str = "Pereira et al. 2018 .mat files (examples, keyConcept, meta) → scans with Gordon ROI per column";

    fn inputs(&self) -> Vec<Port> {
        vec![Port::input(
            "data",
            ArtifactKind::Directory,
            "a folder per subject (M01, …) of examples_180concepts_*.mat or data_180concepts_*.mat; or one such folder",
        )]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output(
            "scans",
            "scans",
            ArtifactKind::Directory,
            "per subject SUBJECT.parquet, SUBJECT.voxels.parquet (with roi), SUBJECT.mask.nii.gz",
        )]
    }

    fn run(&self, ctx: &mut Context, params: &PereiraParams) -> Result<(), StageError> {
        self.part(ctx, params, Part::Whole)
    }

    const SHARDABLE: bool = true;

    fn shards(&self, ctx: &Context, _params: &PereiraParams) -> Result<usize, StageError> {
        Ok(subject_folders(ctx.input("data")?)?.len())
    }

    fn run_shard(
        &self,
        ctx: &mut Context,
        params: &PereiraParams,
        index: usize,
        count: usize,
    ) -> Result<(), StageError> {
        self.part(ctx, params, Part::Subject { index, count })
    }

    fn merge_shards(
        &self,
        ctx: &mut Context,
        params: &PereiraParams,
        shards: &[PathBuf],
    ) -> Result<(), StageError> {
        self.part(ctx, params, Part::Merge(shards))
    }
}

impl IngestPereira {
    /// The whole import, one subject of it, or the merge of its subjects.
    fn part(
        &self,
        ctx: &mut Context,
        params: &PereiraParams,
        part: Part<'_>,
    ) -> Result<(), StageError> {
        let data = ctx.input("data")?.to_path_buf();
        let subjects = subject_folders(&data)?;
        let out = ctx.output("scans");
        for_each_subject(ctx, (&data, &subjects), part, |subject, files| {
            ingest_subject(&out, subject, files, params)
        })?;
        Ok(())
    }
}

/// The paradigm a file name names.
fn paradigm_of(name: &str) -> Option<&'static str> {
    let lower = name.to_lowercase();
    if !lower.contains("180concepts") || !lower.ends_with(".mat") {
        return None;
    }
    [("pictures", "picture"), ("sentences", "sentence"), ("wordclouds", "word_cloud")]
        .into_iter()
        .find_map(|(key, paradigm)| lower.contains(key).then_some(paradigm))
}

/// A subject's MAT-files with the paradigm each holds.
type SubjectFiles = Vec<(PathBuf, &'static str)>;

fn mat_files(dir: &Path) -> Result<SubjectFiles> {
    let mut files: SubjectFiles = std::fs::read_dir(dir)
        .at(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            paradigm_of(&name).map(|par| (p, par))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Subject folders (sorted) and their files; `data` itself when it holds the files directly.
fn subject_folders(data: &Path) -> Result<Vec<(String, SubjectFiles)>> {
    let here = mat_files(data)?;
    if !here.is_empty() {
        let name = data
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "subject".to_owned());
        return Ok(vec![(name, here)]);
    }
    let mut subjects = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data)
        .at(data)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let files = mat_files(&dir)?;
        if !files.is_empty() {
            let name =
                dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            subjects.push((name, files));
        }
    }
    if subjects.is_empty() {
        return Err(IngestError::Params(format!(
            "{}: no *_180concepts_{{pictures,sentences,wordclouds}}.mat files here or in its subfolders",
            data.display()
        )));
    }
    Ok(subjects)
}

fn numeric<'a>(
    path: &Path,
    value: Option<&'a MatValue>,
    what: &str,
) -> Result<(&'a [usize], &'a [f64])> {
    match value {
        Some(MatValue::Numeric { dims, data }) => Ok((dims, data)),
        Some(_) => Err(IngestError::Mat {
            path: path.to_path_buf(),
            message: format!("`{what}` is not numeric"),
        }),
        None => Err(IngestError::Mat { path: path.to_path_buf(), message: format!("no `{what}`") }),
    }
}

/// The stimulus word of each row: `keyConcept` (cell of strings) or `labelsConcept` (numbers).
fn concepts(
    path: &Path,
    vars: &std::collections::BTreeMap<String, MatValue>,
    rows: usize,
) -> Result<Vec<String>> {
    let bad = |message: String| IngestError::Mat { path: path.to_path_buf(), message };
    let words: Vec<String> = match (vars.get("keyConcept"), vars.get("labelsConcept")) {
        (Some(MatValue::Cell { items, .. }), _) => items
            .iter()
            .map(|i| i.text().ok_or_else(|| bad("`keyConcept` holds a non-string".to_owned())))
            .collect::<Result<_>>()?,
        (Some(MatValue::Char { rows, .. }), _) => {
            rows.iter().map(|r| r.trim_end().to_owned()).collect()
        }
        (_, Some(MatValue::Numeric { data, .. })) => data.iter().map(|v| format!("{v}")).collect(),
        (_, Some(MatValue::Cell { items, .. })) => {
            items.iter().filter_map(MatValue::text).collect()
        }
        _ => return Err(bad("neither `keyConcept` nor `labelsConcept`".to_owned())),
    };
    if words.len() != rows {
        return Err(bad(format!("{} concept labels for {rows} rows of `examples`", words.len())));
    }
    Ok(words)
}

/// ROI label (1-based, 0 = none) of each column, from either published `meta` layout.
fn roi_labels(path: &Path, meta: &MatValue, atlas: &str, columns: usize) -> Result<Vec<i32>> {
    let bad = |message: String| IngestError::Mat { path: path.to_path_buf(), message };
    let suffix = {
        let mut c = atlas.chars();
        c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
    };
    let from_mask = |value: &MatValue| -> Result<Vec<i32>> {
        let (_, data) = numeric(path, Some(value), "roiMultimask")?;
        if data.len() != columns {
            return Err(bad(format!(
                "roiMultimask has {} entries for {columns} columns",
                data.len()
            )));
        }
        Ok(data.iter().map(|&v| v as i32).collect())
    };
    let from_columns = |value: &MatValue| -> Result<Vec<i32>> {
        let MatValue::Cell { items, .. } = value else {
            return Err(bad("roiColumns is not a cell array".to_owned()));
        };
        let mut labels = vec![0i32; columns];
        for (roi, item) in items.iter().enumerate() {
            let (_, cols) = numeric(path, Some(item), "roiColumns entry")?;
            for &c in cols {
                let c = c as usize;
                if c == 0 || c > columns {
                    return Err(bad(format!("roiColumns names column {c} of {columns} (1-based)")));
                }
                labels[c - 1] = roi as i32 + 1;
            }
        }
        Ok(labels)
    };
    // Layout 1: meta.roiMultimaskGordon / meta.roiColumnsGordon.
    if let Some(mask) = meta.field(&format!("roiMultimask{suffix}")) {
        return from_mask(mask);
    }
    if let Some(cols) = meta.field(&format!("roiColumns{suffix}")) {
        return from_columns(cols);
    }
    // Layout 2: meta.atlases {names} with meta.roiMultimask / meta.roiColumns {per atlas}.
    if let Some(MatValue::Cell { items: names, .. }) = meta.field("atlases") {
        let index = names
            .iter()
            .position(|n| n.text().is_some_and(|t| t.eq_ignore_ascii_case(atlas)))
            .ok_or_else(|| {
                let known: Vec<String> = names.iter().filter_map(MatValue::text).collect();
                bad(format!("no atlas `{atlas}` in meta.atlases ({})", known.join(", ")))
            })?;
        if let Some(MatValue::Cell { items, .. }) = meta.field("roiMultimask")
            && let Some(mask) = items.get(index)
        {
            return from_mask(mask);
        }
        if let Some(MatValue::Cell { items, .. }) = meta.field("roiColumns")
            && let Some(cols) = items.get(index)
        {
            return from_columns(cols);
        }
    }
    Err(bad(format!(
        "meta has no ROI columns for atlas `{atlas}` (roiMultimask{suffix}, roiColumns{suffix}, or atlases + roiMultimask/roiColumns)"
    )))
}

/// The voxel grid of a subject from `meta.colToCoord` (1-based i, j, k per column) and
/// `meta.dimensions`.
fn grid(
    path: &Path,
    meta: &MatValue,
    columns: usize,
    params: &PereiraParams,
    roi: Vec<i32>,
) -> Result<VoxelGrid> {
    let bad = |message: String| IngestError::Mat { path: path.to_path_buf(), message };
    let (cdims, coords) = numeric(path, meta.field("colToCoord"), "meta.colToCoord")?;
    if cdims.first() != Some(&columns) || cdims.get(1) != Some(&3) {
        return Err(bad(format!("meta.colToCoord is {cdims:?}, expected [{columns}, 3]")));
    }
    let (_, dimensions) = numeric(path, meta.field("dimensions"), "meta.dimensions")?;
    if dimensions.len() != 3 {
        return Err(bad(format!("meta.dimensions has {} entries, expected 3", dimensions.len())));
    }
    let dims = [dimensions[0] as usize, dimensions[1] as usize, dimensions[2] as usize];
    let mut ijk = Vec::with_capacity(columns);
    for c in 0..columns {
        let v = [coords[c], coords[c + columns], coords[c + 2 * columns]];
        let mut index = [0usize; 3];
        for axis in 0..3 {
            let x = v[axis];
            if !(x >= 1.0 && x <= dims[axis] as f64 && x.fract() == 0.0) {
                return Err(bad(format!(
                    "meta.colToCoord row {} is {v:?}, outside 1..{dims:?}",
                    c + 1
                )));
            }
            index[axis] = x as usize - 1;
        }
        ijk.push(index);
    }
    let affine = match meta.field("matrix") {
        Some(MatValue::Numeric { dims: d, data }) if d[..] == [4, 4] => {
            // MATLAB column-major; its affine maps 1-based voxels: shift to 0-based.
            let mut m = [[0.0; 4]; 4];
            for (r, row) in m.iter_mut().enumerate() {
                for (c, cell) in row.iter_mut().enumerate() {
                    *cell = data[r + 4 * c];
                }
            }
            for row in m.iter_mut().take(3) {
                row[3] += row[0] + row[1] + row[2];
            }
            m
        }
        _ => {
            let s = params.voxel_mm;
            [[s, 0.0, 0.0, 0.0], [0.0, s, 0.0, 0.0], [0.0, 0.0, s, 0.0], [0.0, 0.0, 0.0, 1.0]]
        }
    };
    Ok(VoxelGrid { dims, affine, ijk, roi: Some(roi) })
}

fn ingest_subject(
    out: &Path,
    subject: &str,
    files: &[(PathBuf, &'static str)],
    params: &PereiraParams,
) -> Result<(usize, usize)> {
    let mut writer: Option<(ScansWriter, VoxelGrid, PathBuf)> = None;
    for (path, paradigm) in files {
        let vars = read_mat(path)?;
        let (edims, examples) = numeric(path, vars.get("examples"), "examples")?;
        let (rows, columns) = (edims[0], edims.get(1).copied().unwrap_or(1));
        let words = concepts(path, &vars, rows)?;
        let meta = vars.get("meta").ok_or_else(|| IngestError::Mat {
            path: path.clone(),
            message: "no `meta` struct".to_owned(),
        })?;
        let roi = roi_labels(path, meta, &params.atlas, columns)?;
        let this_grid = grid(path, meta, columns, params, roi)?;
        let (scans, grid0, first) = match &mut writer {
            Some(w) => w,
            None => {
                let w = ScansWriter::create(out, subject, &this_grid, &file_name(path))?;
                writer.insert((w, this_grid.clone(), path.clone()))
            }
        };
        if this_grid.ijk != grid0.ijk || this_grid.roi != grid0.roi {
            return Err(IngestError::Mat {
                path: path.clone(),
                message: format!("columns differ from {} of the same subject", first.display()),
            });
        }
        let mut row = vec![0f32; columns];
        for (r, word) in words.iter().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = examples[r + c * rows] as f32;
            }
            let trial = TrialInfo {
                session: String::new(),
                run: (*paradigm).to_owned(),
                trial: r as i32,
                stimulus: word.clone(),
                paradigm: (*paradigm).to_owned(),
                onset: None,
            };
            scans.push(trial, &row)?;
        }
    }
    let (scans, grid, _) = writer.expect("subject_folders lists subjects with files");
    Ok((scans.finish()?, grid.ijk.len()))
}
