//! The `scans` artifact every importer writes, and `ingest.nifti`, the importer of NIfTI volumes
//! with BIDS events.
//!
//! `scans` is a directory with, per subject, `SUBJECT.parquet` (one row per trial, the masked
//! voxels as `FixedSizeList<Float32, V>`), `SUBJECT.voxels.parquet` (where each column sits) and
//! `SUBJECT.mask.nii.gz`. Subjects get a file each because they need not share a voxel set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray};
use brainpipe_artifacts::{SCANS, VOXELS, VoxelTable, scans_schema};
use brainpipe_core::{ArtifactKind, Context, IoContext, Port, Stage, StageError, f32_list_array};
use brainpipe_nifti::{
    Header, VolumeReader, WriteOptions, XFORM_SCANNER, invert_affine, nearest_voxel, read_f32,
    voxel_to_world,
};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;

use crate::error::{IngestError, Result};
use crate::events::{Event, read_events};
use crate::row_groups::ParallelTableWriter;
use crate::subject_shards::{Part, move_files, pick, read_records, write_record};

/// Most trials per Parquet row group.
const MAX_ROWS_PER_GROUP: usize = 64;

/// The name of `path`, as a scans table records its sources: names, not locations, so the same
/// inputs anywhere give the same bytes.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Trials per row group for rows of `width` voxels: 8 MB of values (`brainpipe_core`'s
/// [`WIDE_ROW_GROUP_BYTES`](brainpipe_core::WIDE_ROW_GROUP_BYTES)), at most 64.
fn rows_per_group(width: usize) -> usize {
    brainpipe_core::wide_rows_per_group(4 * width, MAX_ROWS_PER_GROUP)
}

/// The scans table's Parquet settings: brainpipe-core's table defaults (zstd level 1 everywhere;
/// the float items without dictionaries, BYTE_STREAM_SPLIT so zstd sees the bytes grouped by
/// significance) with no min/max statistics on the voxel items — a chunk's extremes over
/// millions of voxel values help no reader, and computing them cost a tenth of the encoding —
/// and the column writer's mini-batches at 64 Ki values rather than 1 Ki (3 % less CPU for the
/// whole import; a data page may overshoot the 1 MiB limit by one mini-batch, 256 KiB).
fn scans_writer_properties() -> WriterProperties {
    let items = ColumnPath::new(vec!["voxels".to_owned(), "list".to_owned(), "item".to_owned()]);
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_write_batch_size(1 << 16)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_column_dictionary_enabled(items.clone(), false)
        .set_column_encoding(items.clone(), Encoding::BYTE_STREAM_SPLIT)
        .set_column_statistics_enabled(items, EnabledStatistics::None)
        .build()
}

/// One trial of a subject, as written to `SUBJECT.parquet`.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialInfo {
    /// Session label (`""` when none).
    pub session: String,
    /// Run label.
    pub run: String,
    /// 0-based volume index in the source file.
    pub trial: i32,
    /// Stimulus key.
    pub stimulus: String,
    /// Paradigm / condition.
    pub paradigm: String,
    /// Onset in seconds, when known.
    pub onset: Option<f64>,
}

/// Where the columns of a subject's voxel rows sit.
#[derive(Clone, Debug, PartialEq)]
pub struct VoxelGrid {
    /// Grid dims `[X, Y, Z]`.
    pub dims: [usize; 3],
    /// Voxel → world affine.
    pub affine: [[f64; 4]; 4],
    /// Voxel indices of each column, in column order.
    pub ijk: Vec<[usize; 3]>,
    /// ROI label of each column, when the importer knows it.
    pub roi: Option<Vec<i32>>,
}

/// Streams one subject's trials into `scans/SUBJECT.parquet` and writes its voxel table and mask.
pub struct ScansWriter {
    subject: String,
    path: PathBuf,
    width: usize,
    writer: ParallelTableWriter,
    group: usize,
    infos: Vec<TrialInfo>,
    values: Vec<f32>,
    rows: usize,
    /// Writes the voxel table and the mask.
    side_tables: std::thread::JoinHandle<Result<()>>,
}

impl ScansWriter {
    /// Starts `dir/SUBJECT.parquet` for rows of `grid.ijk.len()` voxels, and writes the voxel
    /// table and the mask on a thread of their own (done when [`ScansWriter::finish`] returns).
    pub fn create(dir: &Path, subject: &str, grid: &VoxelGrid, source: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).at(dir)?;
        // Written beside the trials, off the thread that feeds them; joined by `finish`.
        let side_tables = {
            let (voxels, mask) = (
                dir.join(format!("{subject}.voxels.parquet")),
                dir.join(format!("{subject}.mask.nii.gz")),
            );
            let grid = grid.clone();
            std::thread::spawn(move || {
                write_voxels(&voxels, &grid)?;
                write_mask(&mask, &grid)
            })
        };
        let width = grid.ijk.len();
        let schema = scans_schema(width, source);
        let path = dir.join(format!("{subject}.parquet"));
        let group = rows_per_group(width);
        let writer = ParallelTableWriter::create(&path, SCANS, &schema, scans_writer_properties())?;
        Ok(ScansWriter {
            subject: subject.to_owned(),
            path,
            width,
            writer,
            group,
            infos: Vec::with_capacity(group),
            values: Vec::with_capacity(group * width),
            rows: 0,
            side_tables,
        })
    }

    /// Appends a trial's voxel values (one per column).
    pub fn push(&mut self, trial: TrialInfo, voxels: &[f32]) -> Result<()> {
        if voxels.len() != self.width {
            return Err(IngestError::Params(format!(
                "{}: trial {} has {} voxels, the subject's mask has {}",
                self.path.display(),
                trial.trial,
                voxels.len(),
                self.width
            )));
        }
        self.push_with(trial, |row| row.extend_from_slice(voxels))
    }

    /// Appends a trial whose voxel values `fill` appends to the row group being built (exactly
    /// one per column, in column order), so a streaming importer copies each volume once.
    pub fn push_with(&mut self, trial: TrialInfo, fill: impl FnOnce(&mut Vec<f32>)) -> Result<()> {
        let start = self.values.len();
        fill(&mut self.values);
        let filled = self.values.len() - start;
        if filled != self.width {
            self.values.truncate(start);
            return Err(IngestError::Params(format!(
                "{}: trial {} got {filled} voxel values, the subject's mask has {}",
                self.path.display(),
                trial.trial,
                self.width
            )));
        }
        self.infos.push(trial);
        if self.infos.len() >= self.group {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.infos.is_empty() {
            return Ok(());
        }
        let infos = std::mem::take(&mut self.infos);
        let values = std::mem::take(&mut self.values);
        let text = |f: &dyn Fn(&TrialInfo) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(infos.iter().map(f)))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(infos.iter().map(|_| self.subject.as_str()))),
            text(&|t| &t.session),
            text(&|t| &t.run),
            Arc::new(Int32Array::from_iter_values(infos.iter().map(|t| t.trial))),
            text(&|t| &t.stimulus),
            text(&|t| &t.paradigm),
            Arc::new(Float64Array::from_iter(infos.iter().map(|t| t.onset))),
            f32_list_array(values, self.width.max(1)),
        ];
        let batch = RecordBatch::try_new(self.writer.schema().clone(), columns)
            .map_err(|source| brainpipe_core::Error::Arrow { path: self.path.clone(), source })?;
        self.writer.write(batch)?;
        self.values = self
            .writer
            .spare_f32_buffer()
            .unwrap_or_else(|| Vec::with_capacity(self.group * self.width));
        self.rows += infos.len();
        Ok(())
    }

    /// Writes the footer; returns the number of trials written.
    pub fn finish(mut self) -> Result<usize> {
        self.flush()?;
        self.writer.finish()?;
        self.side_tables.join().unwrap_or_else(|_| {
            Err(IngestError::Params(format!(
                "{}: the voxel-table writer panicked",
                self.path.display()
            )))
        })?;
        Ok(self.rows)
    }
}

/// The grid's voxel table (`voxels/1`): indices, world coordinates and ROI labels (null when
/// the importer knows none).
fn write_voxels(path: &Path, grid: &VoxelGrid) -> Result<()> {
    let xyz = grid
        .ijk
        .iter()
        .map(|&[i, j, k]| {
            let w = voxel_to_world(&grid.affine, [i as f64, j as f64, k as f64]);
            [w[0] as f32, w[1] as f32, w[2] as f32]
        })
        .collect();
    let table = VoxelTable {
        dims: grid.dims,
        affine: grid.affine,
        ijk: grid.ijk.iter().map(|v| v.map(|c| c as i32)).collect(),
        xyz,
        roi: match &grid.roi {
            Some(labels) => labels.iter().copied().map(Some).collect(),
            None => vec![None; grid.ijk.len()],
        },
        scan_column: (0..grid.ijk.len() as i32).collect(),
    };
    Ok(brainpipe_artifacts::write_voxels(path, VOXELS, &table)?)
}

fn write_mask(path: &Path, grid: &VoxelGrid) -> Result<()> {
    let [x, y, _] = grid.dims;
    let mut mask = vec![0u8; grid.dims.iter().product()];
    for &[i, j, k] in &grid.ijk {
        mask[i + x * (j + y * k)] = 1;
    }
    let options = WriteOptions {
        affine: grid.affine,
        xform_code: XFORM_SCANNER,
        tr_s: None,
        gzip_level: Some(6),
    };
    brainpipe_nifti::write_volume(path, grid.dims, &mask, &options).map_err(IngestError::from)
}

brainpipe_core::params! {
    /// Params of `ingest.nifti`.
    pub struct NiftiParams {
        /// Events column holding the stimulus of each trial (BIDS: `trial_type`; the synthetic
        /// study also has `stimulus`, the stimulus id).
        pub stimulus_column: String = "trial_type".to_owned(),
        /// Events column holding the paradigm / condition; when the events lack it, the run label.
        pub paradigm_column: String = "paradigm".to_owned(),
        /// Read events (`*_events.tsv` beside each NIfTI file); `false`: one trial per volume.
        pub events: bool = true,
    }
}

/// `ingest.nifti`: NIfTI-1/2 volumes (3-D or 4-D, 4th axis = trials) + BIDS events → `scans`.
pub struct IngestNifti;

impl Stage for IngestNifti {
    type Params = NiftiParams;
    const NAME: &'static str = "ingest.nifti";
    const VERSION: u32 = 3;
    const SUMMARY: &'static str =
        "NIfTI-1/2 beta or BOLD volumes + BIDS events → scans (masked voxel rows per subject)";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input("bold", ArtifactKind::Directory, "a NIfTI file, or a directory of sub-XX[_ses-YY][_run-ZZ]_*.nii[.gz] with *_events.tsv beside them"),
            Port::input("mask", ArtifactKind::Nifti, "brain mask (non-zero = keep); resampled nearest-neighbour when on another grid; default: every voxel").optional(),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![Port::output(
            "scans",
            "scans",
            ArtifactKind::Directory,
            "per subject SUBJECT.parquet (trials × masked voxels), SUBJECT.voxels.parquet, SUBJECT.mask.nii.gz",
        )]
    }

    fn run(&self, ctx: &mut Context, params: &NiftiParams) -> Result<(), StageError> {
        self.part(ctx, params, Part::Whole)
    }

    const SHARDABLE: bool = true;

    fn shards(&self, ctx: &Context, _params: &NiftiParams) -> Result<usize, StageError> {
        Ok(nifti_subjects(ctx.input("bold")?)?.len())
    }

    fn run_shard(
        &self,
        ctx: &mut Context,
        params: &NiftiParams,
        index: usize,
        count: usize,
    ) -> Result<(), StageError> {
        self.part(ctx, params, Part::Subject { index, count })
    }

    fn merge_shards(
        &self,
        ctx: &mut Context,
        params: &NiftiParams,
        shards: &[PathBuf],
    ) -> Result<(), StageError> {
        self.part(ctx, params, Part::Merge(shards))
    }
}

impl IngestNifti {
    /// The whole import, one subject of it, or the merge of its subjects (see
    /// `subject_shards`).
    fn part(
        &self,
        ctx: &mut Context,
        params: &NiftiParams,
        part: Part<'_>,
    ) -> Result<(), StageError> {
        let bold = ctx.input("bold")?.to_path_buf();
        let subjects = nifti_subjects(&bold)?;
        let mask = ctx.optional_input("mask").map(load_mask).transpose()?;
        let out = ctx.output("scans");
        for_each_subject(ctx, (&bold, &subjects), part, |subject, files| {
            let trials = |file: &SourceFile, volumes: usize| trials_for(file, volumes, params);
            ingest_subject(&out, subject, files, mask.as_ref(), None, &trials)
        })?;
        Ok(())
    }
}

/// The NIfTI files of `bold` by subject, in subject order: the stage's shards.
fn nifti_subjects(bold: &Path) -> Result<Vec<(String, Vec<SourceFile>)>> {
    let mut subjects: BTreeMap<String, Vec<SourceFile>> = BTreeMap::new();
    for file in nifti_files(bold)? {
        subjects.entry(file.subject.clone()).or_default().push(file);
    }
    Ok(subjects.into_iter().collect())
}

/// Imports `subjects` in parallel (one `scans` table each) with a progress bar, and records each
/// subject's trial and voxel counts in the manifest's `subjects` note. `each` returns (trials,
/// voxels). As a shard (`part`), imports one subject and records its counts in `subject.json`;
/// as a merge, moves the shards' subject files into `scans` and builds the note from them.
pub(crate) fn for_each_subject<T: Sync>(
    ctx: &mut Context,
    (source, subjects): (&Path, &[(String, T)]),
    part: Part<'_>,
    each: impl Fn(&str, &T) -> Result<(usize, usize)> + Sync,
) -> Result<()> {
    let counts = |subject: &str, (trials, voxels): (usize, usize)| serde_json::json!({"subject": subject, "trials": trials, "voxels": voxels});
    let counts: Vec<serde_json::Value> = match part {
        Part::Whole => {
            let bar = ctx.progress(subjects.len() as u64, "subjects");
            let all = subjects
                .par_iter()
                .map(|(subject, item)| {
                    let done = each(subject, item);
                    bar.inc(1);
                    done.map(|done| counts(subject, done))
                })
                .collect::<Result<_>>()?;
            bar.finish_and_clear();
            all
        }
        Part::Subject { index, count } => {
            let (subject, item) = pick(subjects, (index, count), source)?;
            let done = counts(subject, each(subject, item)?);
            write_record(ctx.out_dir(), (index, count), subject, done.clone())?;
            vec![done]
        }
        Part::Merge(shards) => {
            let names: Vec<String> = subjects.iter().map(|(s, _)| s.clone()).collect();
            let results = read_records(shards, &names)?;
            for shard in shards {
                move_files(ctx, "scans", shard)?;
            }
            results
        }
    };
    ctx.note("subjects", counts);
    Ok(())
}

/// A NIfTI file with what its name says (BIDS entities).
#[derive(Clone, Debug)]
pub(crate) struct SourceFile {
    pub(crate) path: PathBuf,
    pub(crate) subject: String,
    pub(crate) session: String,
    pub(crate) run: String,
}

/// The trials of a source file with `volumes` volumes, in volume order.
pub(crate) type TrialSource<'a> = dyn Fn(&SourceFile, usize) -> Result<Vec<TrialInfo>> + Sync + 'a;

fn is_nifti(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

/// The NIfTI files of `bold` (a file, or a directory listed in sorted order).
fn nifti_files(bold: &Path) -> Result<Vec<SourceFile>> {
    let paths: Vec<PathBuf> = if bold.is_dir() {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(bold)
            .at(bold)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_nifti(p))
            .collect();
        paths.sort();
        paths
    } else {
        vec![bold.to_path_buf()]
    };
    if paths.is_empty() {
        return Err(IngestError::Params(format!("{}: no .nii or .nii.gz files", bold.display())));
    }
    Ok(paths.into_iter().map(|path| describe(&path)).collect())
}

/// BIDS entities from a file name: `sub-01_ses-02_task-x_run-3_bold.nii.gz`.
fn describe(path: &Path) -> SourceFile {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.trim_end_matches(".gz").trim_end_matches(".nii").to_owned();
    let entity = |key: &str| {
        stem.split('_').find_map(|part| part.strip_prefix(key).map(|v| format!("{key}{v}")))
    };
    let subject = entity("sub-").unwrap_or_else(|| stem.clone());
    let session = entity("ses-").unwrap_or_default();
    let run = [entity("task-"), entity("run-")].into_iter().flatten().collect::<Vec<_>>().join("_");
    SourceFile { path: path.to_path_buf(), subject, session, run }
}

/// The events file beside a NIfTI file: `X_bold.nii.gz` → `X_events.tsv`, else `X_events.tsv`
/// for `X.nii.gz`.
fn events_path(nifti: &Path) -> Option<PathBuf> {
    let name = nifti.file_name()?.to_string_lossy().into_owned();
    let stem = name.trim_end_matches(".gz").trim_end_matches(".nii");
    let base =
        stem.rsplit_once('_').map_or(stem, |(b, suffix)| if suffix == "bold" { b } else { stem });
    let candidate = nifti.with_file_name(format!("{base}_events.tsv"));
    candidate.exists().then_some(candidate)
}

/// A mask volume: where it is non-zero, on its grid.
pub(crate) struct Mask {
    path: PathBuf,
    header: Header,
    values: Vec<f32>,
}

pub(crate) fn load_mask(path: &Path) -> Result<Mask> {
    let (header, values) = read_f32(path).map_err(IngestError::from)?;
    if header.volumes() != 1 {
        return Err(IngestError::nifti(
            path,
            format!("a mask must be 3-D, got dims {:?}", header.dims),
        ));
    }
    Ok(Mask { path: path.to_path_buf(), header, values })
}

fn same_grid(a: &Header, b: &Header) -> bool {
    let (fa, fb) = (a.affine(), b.affine());
    a.shape3() == b.shape3()
        && fa
            .iter()
            .flatten()
            .zip(fb.iter().flatten())
            .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + x.abs()))
}

fn has_affine(h: &Header) -> bool {
    h.qform_code > 0 || h.sform_code > 0
}

/// The columns a subject keeps: every voxel, the mask's voxels on the same grid, or the mask
/// resampled nearest-neighbour through both affines (as nilearn does); with ROI labels (one per
/// voxel of the grid, 0 outside every ROI), only the labelled ones among those, labels recorded.
fn grid_for(
    header: &Header,
    source: &Path,
    mask: Option<&Mask>,
    rois: Option<&[i32]>,
) -> Result<VoxelGrid> {
    let dims = header.shape3();
    let [x, y, z] = dims;
    let affine = header.affine();
    let all = || (0..z).flat_map(move |k| (0..y).flat_map(move |j| (0..x).map(move |i| [i, j, k])));
    let ijk: Vec<[usize; 3]> = match mask {
        None => all().collect(),
        Some(mask) if same_grid(header, &mask.header) => {
            all().filter(|&[i, j, k]| mask.values[i + x * (j + y * k)] != 0.0).collect()
        }
        Some(mask) => {
            if !has_affine(&mask.header) || !has_affine(header) {
                let which = if has_affine(header) { &mask.path } else { &source.to_path_buf() };
                return Err(IngestError::nifti(
                    which,
                    format!(
                        "mask grid {:?} differs from the data grid {:?} and there is no qform/sform to resample through",
                        mask.header.shape3(),
                        dims
                    ),
                ));
            }
            let inverse = invert_affine(&mask.header.affine())
                .ok_or_else(|| IngestError::nifti(&mask.path, "the mask's affine is singular"))?;
            let [mx, my, _] = mask.header.shape3();
            all()
                .filter(|&[i, j, k]| {
                    let world = voxel_to_world(&affine, [i as f64, j as f64, k as f64]);
                    nearest_voxel(&inverse, mask.header.shape3(), world)
                        .is_some_and(|[a, b, c]| mask.values[a + mx * (b + my * c)] != 0.0)
                })
                .collect()
        }
    };
    if ijk.is_empty() {
        let path = mask.map_or(source, |m| m.path.as_path());
        return Err(IngestError::nifti(path, "the mask keeps no voxel of the data grid"));
    }
    let Some(labels) = rois else {
        return Ok(VoxelGrid { dims, affine, ijk, roi: None });
    };
    let label = |&[i, j, k]: &[usize; 3]| labels.get(i + x * (j + y * k)).copied().unwrap_or(0);
    let (ijk, roi): (Vec<[usize; 3]>, Vec<i32>) =
        ijk.iter().filter(|v| label(v) != 0).map(|v| (*v, label(v))).unzip();
    if ijk.is_empty() {
        return Err(IngestError::roi(source, "the ROI masks keep no voxel (within the mask)"));
    }
    Ok(VoxelGrid { dims, affine, ijk, roi: Some(roi) })
}

/// Streams a subject's files into its scans table, keeping the voxels of `mask` and, when given,
/// those labelled in `rois` (a label per voxel of the grid, 0 = none). Returns (trials, voxels).
pub(crate) fn ingest_subject(
    out: &Path,
    subject: &str,
    files: &[SourceFile],
    mask: Option<&Mask>,
    rois: Option<&[i32]>,
    trial_source: &TrialSource<'_>,
) -> Result<(usize, usize)> {
    let mut first_reader = VolumeReader::open(&files[0].path).map_err(IngestError::from)?;
    // Before anything is sized by the header's dims (the voxel grid): the data must be there.
    first_reader.check_data().map_err(IngestError::from)?;
    let first_header = first_reader.header().clone();
    let grid = grid_for(&first_header, &files[0].path, mask, rois)?;
    let sources: Vec<String> = files.iter().map(|f| file_name(&f.path)).collect();
    let mut writer = ScansWriter::create(out, subject, &grid, &sources.join(";"))?;
    let runs = VoxelRuns::new(&grid);
    // One thread inflates and gathers; the writer encodes finished row groups on its own threads.
    let mut first = Some(first_reader);
    for file in files {
        let mut volumes = match first.take() {
            Some(reader) => reader,
            None => VolumeReader::open(&file.path).map_err(IngestError::from)?,
        };
        if !same_grid(volumes.header(), &first_header) {
            return Err(IngestError::nifti(
                &file.path,
                format!("grid differs from {} of the same subject", files[0].path.display()),
            ));
        }
        let trials = trial_source(file, volumes.header().volumes())?;
        let mut trials = trials.into_iter().peekable();
        let mut volume = Vec::new();
        let mut index = 0usize;
        while volumes.read_volume(&mut volume).map_err(IngestError::from)? {
            while let Some(trial) = trials.next_if(|t| t.trial as usize == index) {
                writer.push_with(trial, |row| runs.gather(&volume, row))?;
            }
            index += 1;
        }
    }
    let rows = writer.finish()?;
    Ok((rows, grid.ijk.len()))
}

/// A mask's columns as runs of consecutive voxels of the volume (rows along x, mostly), so that
/// gathering a trial's row is a few `memcpy`s rather than one indexed load per voxel.
struct VoxelRuns {
    /// (first voxel in the volume, length), in column order.
    runs: Vec<(usize, usize)>,
}

impl VoxelRuns {
    fn new(grid: &VoxelGrid) -> Self {
        let [x, y, _] = grid.dims;
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &[i, j, k] in &grid.ijk {
            let voxel = i + x * (j + y * k);
            match runs.last_mut() {
                Some((start, len)) if *start + *len == voxel => *len += 1,
                _ => runs.push((voxel, 1)),
            }
        }
        VoxelRuns { runs }
    }

    /// Appends the mask's voxels of `volume` to `row`, in column order.
    fn gather(&self, volume: &[f32], row: &mut Vec<f32>) {
        for &(start, len) in &self.runs {
            row.extend_from_slice(&volume[start..start + len]);
        }
    }
}

/// The trials of a file in volume order: from its events, or one per volume.
fn trials_for(file: &SourceFile, volumes: usize, params: &NiftiParams) -> Result<Vec<TrialInfo>> {
    let events = if params.events { events_path(&file.path) } else { None };
    let Some(events_file) = events else {
        return Ok((0..volumes)
            .map(|v| TrialInfo {
                session: file.session.clone(),
                run: file.run.clone(),
                trial: v as i32,
                stimulus: v.to_string(),
                paradigm: file.run.clone(),
                onset: None,
            })
            .collect());
    };
    let events: Vec<Event> =
        read_events(&events_file, &params.stimulus_column, &params.paradigm_column)?;
    let mut trials = Vec::with_capacity(events.len());
    for (row, event) in events.into_iter().enumerate() {
        let volume = event.volume.unwrap_or(row);
        if volume >= volumes {
            return Err(IngestError::Params(format!(
                "{}: event row {} names volume {volume}, but {} has {volumes} volumes",
                events_file.display(),
                row + 1,
                file.path.display()
            )));
        }
        trials.push(TrialInfo {
            session: file.session.clone(),
            run: file.run.clone(),
            trial: volume as i32,
            stimulus: event.stimulus,
            paradigm: event.paradigm.unwrap_or_else(|| file.run.clone()),
            onset: event.onset,
        });
    }
    // Volumes are streamed in order; trials follow them (stable for several events per volume).
    trials.sort_by_key(|t| t.trial);
    Ok(trials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(ijk: Vec<[usize; 3]>) -> VoxelGrid {
        let affine = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0; 4]];
        VoxelGrid { dims: [3, 2, 2], affine, ijk, roi: None }
    }

    fn trial(index: i32) -> TrialInfo {
        TrialInfo {
            session: String::new(),
            run: "run-1".to_owned(),
            trial: index,
            stimulus: index.to_string(),
            paradigm: "run-1".to_owned(),
            onset: None,
        }
    }

    #[test]
    fn runs_gather_the_mask_voxels_in_column_order() {
        // Voxel (i, j, k) holds its NIfTI index i + 3 (j + 2 k).
        let volume: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let runs =
            VoxelRuns::new(&grid(vec![[1, 0, 0], [2, 0, 0], [0, 1, 0], [2, 1, 1], [0, 0, 1]]));
        assert_eq!(runs.runs, vec![(1, 3), (11, 1), (6, 1)]);
        let mut row = vec![-1.0];
        runs.gather(&volume, &mut row);
        assert_eq!(row, vec![-1.0, 1.0, 2.0, 3.0, 11.0, 6.0]);
    }

    #[test]
    fn a_row_of_the_wrong_width_is_refused_and_not_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer =
            ScansWriter::create(dir.path(), "sub-01", &grid(vec![[0, 0, 0], [1, 0, 0]]), "test")
                .expect("create");
        let err = writer.push_with(trial(0), |row| row.push(1.0)).expect_err("short row");
        assert!(
            err.to_string().contains("trial 0 got 1 voxel values, the subject's mask has 2"),
            "{err}"
        );
        let err = writer.push(trial(1), &[1.0, 2.0, 3.0]).expect_err("long row");
        assert!(err.to_string().contains("trial 1 has 3 voxels"), "{err}");
        writer.push(trial(2), &[4.0, 5.0]).expect("push");
        assert_eq!(writer.finish().expect("finish"), 1);
        let (_, batches) =
            brainpipe_core::read_table(&dir.path().join("sub-01.parquet"), Some(SCANS))
                .expect("read");
        let path = dir.path().join("sub-01.parquet");
        let (values, width) =
            brainpipe_core::f32_list_values(&path, "voxels", batches[0].column(7).as_ref())
                .expect("voxels");
        assert_eq!((values, width), (&[4.0f32, 5.0][..], 2));
        assert!(dir.path().join("sub-01.voxels.parquet").is_file());
        assert!(dir.path().join("sub-01.mask.nii.gz").is_file());
    }
}
