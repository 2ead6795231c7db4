//! BIDS `events.tsv`: one row per trial, tab-separated, `n/a` for missing values.

use brainpipe_core::IoContext;
use std::path::Path;

use crate::error::{IngestError, Result};

/// One row of an events file, reduced to what `scans` records.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The volume this trial's beta map is (a `trial` or `volume` column); `None`: row order.
    pub volume: Option<usize>,
    /// The stimulus column's value.
    pub stimulus: String,
    /// The paradigm column's value, when the file has that column.
    pub paradigm: Option<String>,
    /// `onset` in seconds, when present.
    pub onset: Option<f64>,
}

fn bad(path: &Path, message: String) -> IngestError {
    IngestError::Events { path: path.to_path_buf(), message }
}

/// Reads `path`, taking the stimulus from `stimulus_column` and the paradigm from
/// `paradigm_column` (optional in the file).
pub fn read_events(
    path: &Path,
    stimulus_column: &str,
    paradigm_column: &str,
) -> Result<Vec<Event>> {
    let text = std::fs::read_to_string(path).at(path)?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| bad(path, "empty events file: expected a header line".to_owned()))?
        .split('\t')
        .map(str::trim)
        .collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let stimulus = column(stimulus_column).ok_or_else(|| {
        bad(path, format!("no `{stimulus_column}` column (columns: {})", header.join(", ")))
    })?;
    let paradigm = column(paradigm_column);
    let onset = column("onset");
    let volume = column("trial").or_else(|| column("volume"));
    let mut events = Vec::new();
    for (row, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split('\t').map(str::trim).collect();
        let line_no = row + 2;
        if cells.len() != header.len() {
            return Err(bad(
                path,
                format!("line {line_no} has {} cells, the header {}", cells.len(), header.len()),
            ));
        }
        let cell = |i: usize| Some(cells[i]).filter(|c| !c.is_empty() && *c != "n/a");
        let number = |i: usize, what: &str| -> Result<Option<f64>> {
            cell(i)
                .map(|c| {
                    c.parse::<f64>().map_err(|_| {
                        bad(path, format!("line {line_no}: {what} `{c}` is not a number"))
                    })
                })
                .transpose()
        };
        let volume = match volume {
            Some(i) => {
                let v = number(i, "volume index")?
                    .ok_or_else(|| bad(path, format!("line {line_no}: missing volume index")))?;
                if v < 0.0 || v.fract() != 0.0 {
                    return Err(bad(
                        path,
                        format!("line {line_no}: volume index {v} is not a non-negative integer"),
                    ));
                }
                Some(v as usize)
            }
            None => None,
        };
        let stimulus = cell(stimulus)
            .ok_or_else(|| bad(path, format!("line {line_no}: missing `{stimulus_column}`")))?
            .to_owned();
        events.push(Event {
            volume,
            stimulus,
            paradigm: paradigm.and_then(cell).map(str::to_owned),
            onset: match onset {
                Some(i) => number(i, "onset")?,
                None => None,
            },
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bids_columns_and_reports_bad_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("e.tsv");
        std::fs::write(
            &path,
            "onset\tduration\ttrial_type\tparadigm\n0\t3\tapple\tpicture\n6.5\t3\tbanana\tn/a\n",
        )
        .expect("write");
        let events = read_events(&path, "trial_type", "paradigm").expect("valid");
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1],
            Event { volume: None, stimulus: "banana".into(), paradigm: None, onset: Some(6.5) }
        );
        let err = read_events(&path, "word", "paradigm").expect_err("no column").to_string();
        assert!(err.contains("no `word` column"), "{err}");
        std::fs::write(&path, "trial\ttrial_type\n0\ta\nx\tb\n").expect("write");
        let err = read_events(&path, "trial_type", "paradigm").expect_err("bad index").to_string();
        assert!(err.contains("line 3: volume index `x` is not a number"), "{err}");
    }
}
