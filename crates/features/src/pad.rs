//! `features.template_pad`: every subject's ROI blocks laid into one fixed template, so all
//! subjects share one input width (Brain2Word's input layout; rule in [`crate::template`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::datatypes::Schema;
use brainpipe_core::{ArtifactKind, Context, Port, Stage, StageError, open_table};
use rayon::prelude::*;

use crate::error::{FeaturesError, Result};
use crate::template::{Fill, Layout, LayoutError, Template};
use brainpipe_artifacts::{
    FEATURE_VOXELS, FEATURES, FeaturesWriter, ROWS_PER_GROUP, RoiBlock, read_rois, read_voxels,
    roi_label, subjects, write_rois,
};

brainpipe_core::params! {
    /// Params of `features.template_pad`.
    pub struct TemplatePadParams {
        /// What fills template positions a subject has no voxel for: `slice_mean` (the mean of
        /// that subject's voxels of the ROI in the same z-slice, per trial: Brain2Word) or `zero`.
        pub fill: Fill = Fill::SliceMean,
    }
}

/// `features.template_pad`: per-subject ROI features → one table of common width.
pub struct TemplatePad;

impl Stage for TemplatePad {
    type Params = TemplatePadParams;
    const NAME: &'static str = "features.template_pad";
    const VERSION: u32 = 2;
    const SUMMARY: &'static str = "features → one table of common width: each ROI laid into a per-slice template, gaps filled with the slice mean (Brain2Word)";

    fn inputs(&self) -> Vec<Port> {
        vec![
            Port::input("features", ArtifactKind::Directory, "the `features` directory of features.roi"),
            Port::input(
                "template",
                ArtifactKind::File,
                "template.parquet (template/1) or Brain2Word's last_dim.npz (+ sizes.npy beside it); default: derived from the subjects",
            )
            .optional(),
        ]
    }

    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::output(
                "features",
                "features.parquet",
                ArtifactKind::table(brainpipe_artifacts::FEATURES),
                "all subjects' trials, voxels padded to the template width",
            ),
            Port::output(
                "rois",
                "rois.parquet",
                ArtifactKind::table(brainpipe_artifacts::ROIS),
                "per ROI: template offset (`first`) and size (`count`)",
            ),
            Port::output(
                "template",
                "template.parquet",
                ArtifactKind::table(brainpipe_artifacts::TEMPLATE),
                "the template used: roi, z-slice, count",
            ),
        ]
    }

    fn run(&self, ctx: &mut Context, params: &TemplatePadParams) -> Result<(), StageError> {
        let dir = ctx.input("features")?.to_path_buf();
        let names = subjects(&dir)?;
        let subjects: Vec<SubjectVoxels> =
            names.iter().map(|name| SubjectVoxels::read(&dir, name)).collect::<Result<_>>()?;
        let (template, template_source) = match ctx.optional_input("template") {
            Some(path) => (Template::read(path)?, path.to_path_buf()),
            None => {
                let views: Vec<(&str, &[(i32, i32)])> =
                    subjects.iter().map(|s| (s.name.as_str(), s.roi_z.as_slice())).collect();
                (Template::derive(&views), dir.clone())
            }
        };
        let width = template.width();
        if width == 0 {
            return Err(FeaturesError::data(&template_source, "template has no positions").into());
        }
        let layouts: Vec<Layout> = subjects
            .iter()
            .map(|s| s.layout(&template, params.fill, &template_source))
            .collect::<Result<_>>()?;

        let features_path = ctx.output("features");
        let mut writer: Option<FeaturesWriter> = None;
        let mut meta_schema: Option<(PathBuf, Schema)> = None;
        let bar = ctx.progress(subjects.len() as u64, "template_pad");
        for (subject, layout) in subjects.iter().zip(&layouts) {
            let path = dir.join(format!("{}.parquet", subject.name));
            let (schema, reader) = open_table(&path, Some(FEATURES), ROWS_PER_GROUP)?;
            let voxels_at = schema
                .index_of("voxels")
                .map_err(|_| FeaturesError::format(&path, "no `voxels` column"))?;
            let meta_columns: Vec<usize> =
                (0..schema.fields().len()).filter(|&i| i != voxels_at).collect();
            let this_meta = schema
                .project(&meta_columns)
                .map_err(|source| brainpipe_core::Error::Arrow { path: path.clone(), source })?;
            match &meta_schema {
                None => {
                    writer = Some(FeaturesWriter::create(&features_path, &this_meta, width)?);
                    meta_schema = Some((path.clone(), this_meta));
                }
                Some((first, expected)) if expected.fields() != this_meta.fields() => {
                    return Err(FeaturesError::format(
                        &path,
                        format!("columns differ from {}'s", first.display()),
                    )
                    .into());
                }
                Some(_) => {}
            }
            let writer = writer.as_mut().expect("created with the first subject");
            for batch in reader {
                let batch = batch.map_err(|source| brainpipe_core::Error::Arrow {
                    path: path.clone(),
                    source,
                })?;
                let (values, dim) = brainpipe_core::f32_list_values(
                    &path,
                    "voxels",
                    batch.column(voxels_at).as_ref(),
                )?;
                if dim != subject.roi_z.len() {
                    return Err(FeaturesError::format(
                        &path,
                        format!(
                            "{dim} voxels per trial, its voxel table has {}",
                            subject.roi_z.len()
                        ),
                    )
                    .into());
                }
                if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                    return Err(FeaturesError::data(
                        &path,
                        format!(
                            "NaN/inf value at column {} (run features.roi first)",
                            bad % dim.max(1)
                        ),
                    )
                    .into());
                }
                let padded = pad_rows(layout, values, dim, width);
                let meta = batch.project(&meta_columns).map_err(|source| {
                    brainpipe_core::Error::Arrow { path: path.clone(), source }
                })?;
                writer.write(&meta, padded)?;
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        if let Some(writer) = writer {
            writer.finish()?;
        }

        write_rois(&ctx.output("rois"), &template_blocks(&template, &subjects))?;
        template.write(&ctx.output("template"))?;
        ctx.note("width", width);
        ctx.note(
            "template",
            if ctx.optional_input("template").is_some() { "file" } else { "derived" },
        );
        let per_subject: BTreeMap<&str, serde_json::Value> = subjects
            .iter()
            .zip(&layouts)
            .map(|(s, l)| {
                (s.name.as_str(), serde_json::json!({"voxels": s.roi_z.len(), "filled_positions": l.filled, "overflow_voxels": l.overflow}))
            })
            .collect();
        ctx.note("subjects", per_subject);
        Ok(())
    }
}

/// What the template needs of a subject: where its columns sit.
struct SubjectVoxels {
    name: String,
    /// `(roi, z)` per feature column.
    roi_z: Vec<(i32, i32)>,
    /// ROI labels from `SUBJECT.rois.parquet`.
    labels: BTreeMap<i32, String>,
}

impl SubjectVoxels {
    fn read(dir: &Path, name: &str) -> Result<SubjectVoxels> {
        let voxels = read_voxels(&dir.join(format!("{name}.voxels.parquet")), FEATURE_VOXELS)?;
        let roi_z =
            voxels.roi.iter().zip(&voxels.ijk).map(|(r, ijk)| (r.unwrap_or(0), ijk[2])).collect();
        let rois_path = dir.join(format!("{name}.rois.parquet"));
        let labels = if rois_path.is_file() {
            read_rois(&rois_path)?.into_iter().map(|b| (b.roi, b.label)).collect()
        } else {
            BTreeMap::new()
        };
        Ok(SubjectVoxels { name: name.to_owned(), roi_z, labels })
    }

    fn layout(&self, template: &Template, fill: Fill, source: &Path) -> Result<Layout> {
        template.layout(&self.roi_z, fill).map_err(|e| match e {
            LayoutError::UnknownRoi(roi) => FeaturesError::data(
                source,
                format!("template has no roi {roi}, which {} has", self.name),
            ),
            LayoutError::TooSmall { roi, size, voxels } => FeaturesError::data(
                source,
                format!(
                    "template smaller than an ROI: roi {roi} has {size} positions, {} has {voxels} voxels in it",
                    self.name
                ),
            ),
        })
    }
}

/// Lays `rows × dim` subject values into `rows × width` template rows.
fn pad_rows(layout: &Layout, values: &[f32], dim: usize, width: usize) -> Vec<f32> {
    let rows = values.len() / dim.max(1);
    let mut out = vec![0.0f32; rows * width];
    out.par_chunks_mut(width)
        .zip(values.par_chunks(dim.max(1)))
        .for_each_init(Vec::new, |means, (out, row)| layout.apply(row, out, means));
    out
}

/// The template's blocks with their offsets, labels from the subjects' ROI tables.
fn template_blocks(template: &Template, subjects: &[SubjectVoxels]) -> Vec<RoiBlock> {
    let mut first = 0;
    template
        .rois
        .iter()
        .map(|r| {
            let label = subjects
                .iter()
                .find_map(|s| s.labels.get(&r.roi).cloned())
                .unwrap_or_else(|| roi_label(r.roi));
            let block = RoiBlock { roi: r.roi, label, first, count: r.size() };
            first += r.size();
            block
        })
        .collect()
}
