//! `manifest.json`: what a stage run read, which params it used, what it wrote and how.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, IoContext, Result};
use crate::hash::ContentHash;

/// The manifest file name inside every output directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Version of the manifest layout.
pub const MANIFEST_FORMAT: u32 = 1;

/// One input a stage read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    /// Where it came from: `stage.port` or a file path.
    pub source: String,
    /// Content hash of the artifact.
    pub hash: ContentHash,
}

/// One output a stage wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// File or directory name inside the output directory.
    pub file: String,
    /// Content hash.
    pub hash: ContentHash,
    /// Size on disk in bytes.
    pub bytes: u64,
}

/// Everything needed to know how an output directory came to be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// Cache key (hex), or empty for a standalone run outside the cache.
    pub key: String,
    /// Stage name (`features.roi`), or `run` for an external command.
    pub stage: String,
    /// The stage's VERSION at the time of the run.
    pub stage_version: u32,
    /// Pipeline and stage id that produced it, when run from a pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Canonical params (every default filled in).
    pub params: Value,
    /// Inputs by port.
    pub inputs: BTreeMap<String, InputRecord>,
    /// The command line template of an external stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Content hashes of an external stage's `deps`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deps: BTreeMap<String, ContentHash>,
    /// Outputs by port.
    pub outputs: BTreeMap<String, OutputRecord>,
    /// Start time, RFC 3339 UTC.
    pub started: String,
    /// End time, RFC 3339 UTC.
    pub finished: String,
    /// Start time in seconds since the Unix epoch (for arithmetic).
    pub started_unix: f64,
    /// End time in seconds since the Unix epoch.
    pub finished_unix: f64,
    /// The device the stage computed on (`cpu`, `cuda:0`).
    pub device: String,
    /// Whatever the stage chose to record (dropped voxel counts, metrics, seeds…).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub notes: Map<String, Value>,
    /// Tool versions (`brainpipe`, `libtorch`).
    pub tools: BTreeMap<String, String>,
    /// Host name of the machine that ran it.
    pub host: String,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read(&path).at(&path)?;
        serde_json::from_slice(&text).map_err(|source| Error::Json { path, source })
    }

    /// Writes `dir/manifest.json` (pretty, trailing newline).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let mut text = serde_json::to_vec_pretty(self)
            .map_err(|source| Error::Json { path: path.clone(), source })?;
        text.push(b'\n');
        std::fs::write(&path, text).at(&path)
    }

    /// Wall-clock duration of the run in seconds.
    pub fn seconds(&self) -> f64 {
        self.finished_unix - self.started_unix
    }
}

/// This machine's host name (empty when it cannot be told).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

/// Seconds since the Unix epoch.
pub fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// `time` as RFC 3339 in UTC with millisecond precision, e.g. `2026-11-26T06:15:57.123Z`.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days: proleptic Gregorian date of a day count since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_673_757_123);
        assert_eq!(rfc3339_utc(t), "2026-11-26T06:15:57.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_utc(leap), "2000-02-29T00:00:00.000Z");
    }
}
