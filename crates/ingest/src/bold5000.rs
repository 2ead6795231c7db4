//! `ingest.bold5000`: BOLD5000 release 2.0 GLMsingle betas + stimulus presentation lists (+ COCO
//! captions) → `scans` and a `stimuli` table of the images shown, with their five captions.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, ListBuilder, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::Field;
use brainpipe_artifacts::{STIMULI, stimuli_schema};
use brainpipe_core::{
    ArtifactKind, Context, IoContext, Port, Stage, StageError, f32_list_type, write_table,
};
use serde::Deserialize;

use crate::error::{IngestError, Result};
use crate::rois::load_roi_labels;
use crate::scans::{SourceFile, TrialInfo, for_each_subject, ingest_subject, load_mask};
use crate::subject_shards::Part;

brainpipe_core::params! {
    /// Params of `ingest.bold5000`.
    pub struct Bold5000Params {
        /// Beta files to read: the GLMsingle variant in their names (BOLD5000 2.0 ships
        /// `TYPEA-ASSUMEHRF`, `TYPEB-FITHRF`, `TYPEC-FITHRF-GLMDENOISE` and
        /// `TYPED-FITHRF-GLMDENOISE-RR`; the last is the recommended one).
        pub betas: String = "TYPED-FITHRF-GLMDENOISE-RR".to_owned(),
    }
}

/// `ingest.bold5000`.
pub struct IngestBold5000;

impl Stage for IngestBold5000 {
    type Params = Bold5000Params;
    const NAME: &'static str = "ingest.bold5000";
    const VERSION: u32 = 4;
    const SUMMARY: &'static str =
        "BOLD5000 2.0 GLMsingle betas + presentation lists (+ COCO captions) → scans + stimuli";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input(
                "betas",
                ArtifactKind::Directory,
                "CSI{n}_GLMbetas-<variant>_ses-XX.nii.gz files",
            ),
            Port::input(
                "lists",
                ArtifactKind::Directory,
                "Stimuli_Presentation_Lists: CSIn/CSIn_sessXX/*_runYY.txt, one image name per trial, `rep_` on repeats",
            ),
            Port::input(
                "captions",
                ArtifactKind::File,
                "COCO captions_train2014.json (images + annotations)",
            )
            .optional(),
            Port::input(
                "images",
                ArtifactKind::Directory,
                "the stimulus images (searched recursively by file name) to record their paths",
            )
            .optional(),
            Port::input(
                "mask",
                ArtifactKind::Nifti,
                "brain or ROI mask on the betas' grid (or resampled through the affines)",
            )
            .optional(),
            Port::input(
                "rois",
                ArtifactKind::Directory,
                "ROI masks on the betas' grid: SUBJECT/NAME.npy|.mat or SUBJECT_NAME.npy|.mat; keeps the voxels of their union and labels them (voxels' `roi`)",
            )
            .optional(),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::output(
                "scans",
                "scans",
                ArtifactKind::Directory,
                "per subject (CSI1…) SUBJECT.parquet, SUBJECT.voxels.parquet, SUBJECT.mask.nii.gz",
            ),
            Port::output(
                "stimuli",
                "stimuli.parquet",
                ArtifactKind::table(brainpipe_artifacts::STIMULI),
                "one row per image shown: image, split (train: shown once to each subject, test: repeated to one), COCO captions",
            ),
        ]
    }

    fn run(&self, ctx: &mut Context, params: &Bold5000Params) -> Result<(), StageError> {
        self.part(ctx, params, Part::Whole)
    }

    const SHARDABLE: bool = true;

    fn shards(&self, ctx: &Context, params: &Bold5000Params) -> Result<usize, StageError> {
        Ok(subjects(ctx.input("betas")?, &params.betas)?.len())
    }

    fn run_shard(
        &self,
        ctx: &mut Context,
        params: &Bold5000Params,
        index: usize,
        count: usize,
    ) -> Result<(), StageError> {
        self.part(ctx, params, Part::Subject { index, count })
    }

    fn merge_shards(
        &self,
        ctx: &mut Context,
        params: &Bold5000Params,
        shards: &[PathBuf],
    ) -> Result<(), StageError> {
        self.part(ctx, params, Part::Merge(shards))
    }
}

impl IngestBold5000 {
    /// The whole import, one subject of it (no stimuli table: the merge writes it), or the
    /// merge of its subjects.
    fn part(
        &self,
        ctx: &mut Context,
        params: &Bold5000Params,
        part: Part<'_>,
    ) -> Result<(), StageError> {
        let betas_dir = ctx.input("betas")?.to_path_buf();
        let by_subject = subjects(&betas_dir, &params.betas)?;
        let lists = ctx.input("lists")?.to_path_buf();
        let mask = ctx.optional_input("mask").map(load_mask).transpose()?;
        let out = ctx.output("scans");
        // Each session's presentation lists, read once: they give the trials and the stimuli.
        let mut sessions: HashMap<PathBuf, Vec<Vec<String>>> = HashMap::new();
        for file in by_subject.iter().flat_map(|(_, files)| files) {
            sessions.insert(file.path.clone(), session_runs(&lists, file)?);
        }
        let trials_of = |file: &SourceFile, volumes: usize| {
            session_trials(file, &sessions[&file.path], volumes)
        };
        // Every mask is read and checked against its subject's grid before anything is written.
        let rois = match ctx.optional_input("rois") {
            Some(dir) => Some(load_roi_labels(dir, &subject_grids(&by_subject)?)?),
            None => None,
        };
        for_each_subject(ctx, (&betas_dir, &by_subject), part, |subject, files| {
            let labels = rois.as_ref().and_then(|r| r.labels.get(subject)).map(Vec::as_slice);
            ingest_subject(&out, subject, files, mask.as_ref(), labels, &trials_of)
        })?;
        if let Some(rois) = &rois {
            ctx.note("rois", &rois.names);
        }
        if !part.writes_shared() {
            return Ok(());
        }
        // An image is a test image when one subject saw it more than once (BOLD5000's repeated
        // images, `rep_` on the repeats); every subject sees most images once, so counting
        // presentations over subjects would make every image a test image.
        let mut per_subject: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (subject, files) in &by_subject {
            for line in files.iter().flat_map(|f| sessions[&f.path].iter().flatten()) {
                *per_subject.entry((subject.as_str(), strip_rep(line))).or_default() += 1;
            }
        }
        let mut shown: BTreeMap<String, usize> = BTreeMap::new();
        for ((_, image), count) in per_subject {
            let most = shown.entry(image.to_owned()).or_default();
            *most = (*most).max(count);
        }
        let captions = ctx.optional_input("captions").map(read_coco_captions).transpose()?;
        let images = ctx.optional_input("images").map(index_images).transpose()?;
        write_stimuli(&ctx.output("stimuli"), &shown, captions.as_ref(), images.as_ref())?;
        ctx.note("images", shown.len());
        Ok(())
    }
}

/// The beta files of `dir` of GLMsingle variant `variant`, by subject in subject order: the
/// stage's shards.
fn subjects(dir: &Path, variant: &str) -> Result<Vec<(String, Vec<SourceFile>)>> {
    let mut by_subject: BTreeMap<String, Vec<SourceFile>> = BTreeMap::new();
    for file in beta_files(dir, variant)? {
        by_subject.entry(file.subject.clone()).or_default().push(file);
    }
    Ok(by_subject.into_iter().collect())
}

/// Each subject's grid dims, from the header of its first beta file.
fn subject_grids(by_subject: &[(String, Vec<SourceFile>)]) -> Result<BTreeMap<String, [usize; 3]>> {
    by_subject
        .iter()
        .filter_map(|(subject, files)| Some((subject, files.first()?)))
        .map(|(subject, file)| {
            let header = brainpipe_nifti::read_header(&file.path)?;
            Ok((subject.clone(), header.shape3()))
        })
        .collect()
}

fn strip_rep(name: &str) -> &str {
    name.strip_prefix("rep_").unwrap_or(name)
}

/// `CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-01.nii.gz` → subject CSI1, session ses-01.
fn beta_files(dir: &Path, variant: &str) -> Result<Vec<SourceFile>> {
    let needle = format!("_GLMbetas-{variant}_ses-");
    let mut files: Vec<SourceFile> = std::fs::read_dir(dir)
        .at(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|path| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            let (subject, rest) = name.split_once(&needle)?;
            let session = rest.strip_suffix(".nii.gz").or_else(|| rest.strip_suffix(".nii"))?;
            Some(SourceFile {
                path: path.clone(),
                subject: subject.to_owned(),
                session: format!("ses-{session}"),
                run: String::new(),
            })
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if files.is_empty() {
        return Err(IngestError::Params(format!("{}: no *{needle}NN.nii.gz files", dir.display())));
    }
    Ok(files)
}

/// The presentation list files of a session, in run order.
fn session_list_files(lists: &Path, file: &SourceFile) -> Result<Vec<PathBuf>> {
    let number = file.session.trim_start_matches("ses-");
    let dir = lists.join(&file.subject).join(format!("{}_sess{number}", file.subject));
    let mut runs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .at(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    runs.sort();
    if runs.is_empty() {
        return Err(IngestError::Params(format!("{}: no run lists (*.txt)", dir.display())));
    }
    Ok(runs)
}

/// The trial lines of each run of a session, in run order.
fn session_runs(lists: &Path, file: &SourceFile) -> Result<Vec<Vec<String>>> {
    session_list_files(lists, file)?
        .iter()
        .map(|run| {
            let text = std::fs::read_to_string(run).at(run)?;
            Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
        })
        .collect()
}

/// One trial per beta volume: the session's run lists concatenated in run order.
fn session_trials(
    file: &SourceFile,
    runs: &[Vec<String>],
    volumes: usize,
) -> Result<Vec<TrialInfo>> {
    let mut trials = Vec::with_capacity(volumes);
    for (r, lines) in runs.iter().enumerate() {
        for line in lines {
            let image = strip_rep(line);
            let source = if image.starts_with("COCO_") {
                "coco"
            } else if image.starts_with('n')
                && image.contains('_')
                && image.to_lowercase().ends_with(".jpeg")
            {
                "imagenet"
            } else {
                "scene"
            };
            trials.push(TrialInfo {
                session: file.session.clone(),
                run: format!("run-{:02}", r + 1),
                trial: trials.len() as i32,
                stimulus: image.to_owned(),
                paradigm: source.to_owned(),
                onset: None,
            });
        }
    }
    if trials.len() != volumes {
        return Err(IngestError::Params(format!(
            "{}: the presentation lists of {} {} name {} trials, the betas have {volumes} volumes",
            file.path.display(),
            file.subject,
            file.session,
            trials.len()
        )));
    }
    Ok(trials)
}

#[derive(Deserialize)]
struct CocoCaptions {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    id: u64,
    image_id: u64,
    caption: String,
}

/// Captions by image file name, in annotation-id order (stable across COCO releases).
fn read_coco_captions(path: &Path) -> Result<HashMap<String, Vec<String>>> {
    let bytes = std::fs::read(path).at(path)?;
    let coco: CocoCaptions = serde_json::from_slice(&bytes).map_err(|e| {
        IngestError::Params(format!("{}: not a COCO captions file: {e}", path.display()))
    })?;
    let names: HashMap<u64, &str> =
        coco.images.iter().map(|i| (i.id, i.file_name.as_str())).collect();
    let mut annotations = coco.annotations;
    annotations.sort_by_key(|a| a.id);
    let mut captions: HashMap<String, Vec<String>> = HashMap::new();
    for a in annotations {
        if let Some(name) = names.get(&a.image_id) {
            captions.entry((*name).to_owned()).or_default().push(a.caption.trim().to_owned());
        }
    }
    Ok(captions)
}

/// Image file name → path relative to `dir` (searched recursively).
fn index_images(dir: &Path) -> Result<HashMap<String, String>> {
    let mut index = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).at(&d)? {
            let path = entry.at(&d)?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let (Some(name), Ok(rel)) = (path.file_name(), path.strip_prefix(dir)) {
                index.insert(
                    name.to_string_lossy().into_owned(),
                    rel.to_string_lossy().into_owned(),
                );
            }
        }
    }
    Ok(index)
}

fn write_stimuli(
    path: &Path,
    shown: &BTreeMap<String, usize>,
    captions: Option<&HashMap<String, Vec<String>>>,
    images: Option<&HashMap<String, String>>,
) -> Result<()> {
    let names: Vec<&String> = shown.keys().collect();
    if let Some(index) = images
        && let Some(missing) = names.iter().find(|n| !index.contains_key(n.as_str()))
    {
        return Err(IngestError::Params(format!(
            "{}: image `{missing}` is not in the images folder",
            path.display()
        )));
    }
    let mut caption_lists = ListBuilder::new(StringBuilder::new());
    for name in &names {
        match captions.and_then(|c| c.get(name.as_str())) {
            Some(texts) => {
                for t in texts {
                    caption_lists.values().append_value(t);
                }
                caption_lists.append(true);
            }
            None => caption_lists.append(false),
        }
    }
    // Imported studies have no generating latent: a null-valued column keeps the schema.
    let schema = stimuli_schema(Field::new("vector", f32_list_type(1), true));
    let n = names.len();
    let vector = arrow::array::new_null_array(&f32_list_type(1), n);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(0..n as i32)),
        Arc::new(StringArray::from(vec![None::<&str>; n])),
        Arc::new(StringArray::from_iter_values(names.iter().map(|name| {
            images.and_then(|i| i.get(name.as_str())).map_or(name.as_str(), String::as_str)
        }))),
        Arc::new(StringArray::from_iter_values(
            names.iter().map(|name| if shown[name.as_str()] > 1 { "test" } else { "train" }),
        )),
        Arc::new(caption_lists.finish()),
        Arc::new(Int32Array::from(vec![None::<i32>; n])),
        vector,
    ];
    let batch = RecordBatch::try_new(Arc::new(schema), columns)
        .map_err(|source| brainpipe_core::Error::Arrow { path: path.to_path_buf(), source })?;
    Ok(write_table(path, STIMULI, &[batch])?)
}
