//! Where and in which number format a stage computes, as written in params (`device:`,
//! `precision:`). Declared here, free of LibTorch, so the driver checks them at plan time;
//! `brainpipe-tensor` turns them into LibTorch devices and switches.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A device as written in params: `auto` (CUDA when present), `cpu`, `cuda`, `cuda:N`.
///
/// Serialised as written (`cuda` stays `cuda`), so cache keys do not depend on the spelling
/// of the default device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The first CUDA device when available, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device N (`None`: written `cuda`, device 0).
    Cuda(Option<usize>),
}

/// A device string that is not `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown device `{0}`: expected auto, cpu, cuda or cuda:N")]
pub struct UnknownDevice(pub String);

impl DeviceChoice {
    /// Parses `auto`, `cpu`, `cuda`, `cuda:N`.
    pub fn parse(text: &str) -> Result<Self, UnknownDevice> {
        match text.trim() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(None)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| usize::from_str(n).ok())
                .map(|n| DeviceChoice::Cuda(Some(n)))
                .ok_or_else(|| UnknownDevice(other.to_owned())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(None) => f.write_str("cuda"),
            DeviceChoice::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

impl Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        DeviceChoice::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The number format a model computes its large matmuls in (`precision:` of the training and
/// CLIP stages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    Fp32,
    /// bfloat16 inputs and weights for the matmuls the model chooses (Brain2Word networks: the
    /// large first and last layers, f32 master weights; CLIP: the whole model): tensor cores on
    /// CUDA.
    Bf16,
    /// f32 tensors, CUDA matmuls on TF32 tensor cores (LibTorch's global switch, on while
    /// `brainpipe-tensor`'s guard lives). The same as `fp32` on the CPU.
    Tf32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_serialise_as_written_and_typos_are_refused() {
        for text in ["auto", "cpu", "cuda", "cuda:1"] {
            let d: DeviceChoice = serde_json::from_value(serde_json::json!(text)).expect(text);
            assert_eq!(serde_json::to_value(d).expect("ser"), serde_json::json!(text));
        }
        let err = serde_json::from_value::<DeviceChoice>(serde_json::json!("gpu")).expect_err("x");
        assert!(err.to_string().contains("unknown device `gpu`"), "{err}");
    }
}
