//! The typed values of configs, at the bottom of the house: every module above reads
//! them, they read nothing of the crate. Each serialises as the string a user writes in
//! TOML (so resolved configs, and therefore run ids, are the same as when these were
//! plain strings), and an unknown value names its key and the accepted ones.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Implements Display, FromStr and string serde for a fieldless enum from one table of
/// (variant, text); the parse error names `key` and every accepted text.
macro_rules! string_enum {
    ($ty:ident, $key:literal, [$(($variant:ident, $text:literal)),+ $(,)?]) => {
        impl $ty {
            /// Every value, in documentation order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            /// The text a config uses for it.
            pub fn as_str(&self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl ::std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    other => Err(format!(
                        "{} {other:?} must be one of {}",
                        $key,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
// Also for the few string-valued enums outside config (doctor's `--collective`).
pub(crate) use string_enum;

/// A dataset's folder layout (`dataset.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DatasetKind {
    /// MVTec-AD (also the synthetic set).
    Mvtec,
    /// MPDD: the MVTec-AD layout, its own class list and size.
    Mpdd,
    /// VisA: the raw layout with split_csv/1cls.csv.
    Visa,
    Btad,
    /// The public code's JSON-lines metadata files (dataset.train_meta / test_meta).
    Jsonl,
}

string_enum!(
    DatasetKind,
    "dataset.kind",
    [(Mvtec, "mvtec"), (Mpdd, "mpdd"), (Visa, "visa"), (Btad, "btad"), (Jsonl, "jsonl")]
);

impl DatasetKind {
    /// The published class list, used to expand `separate` and to plan when the data is
    /// not on this machine (planning on a laptop for a cluster).
    pub fn published_classes(&self) -> Option<&'static [&'static str]> {
        Some(match self {
            DatasetKind::Mvtec => &[
                "bottle",
                "cable",
                "capsule",
                "carpet",
                "grid",
                "hazelnut",
                "leather",
                "metal_nut",
                "pill",
                "screw",
                "tile",
                "toothbrush",
                "transistor",
                "wood",
                "zipper",
            ],
            DatasetKind::Visa => &[
                "candle",
                "capsules",
                "cashew",
                "chewinggum",
                "fryum",
                "macaroni1",
                "macaroni2",
                "pcb1",
                "pcb2",
                "pcb3",
                "pcb4",
                "pipe_fryum",
            ],
            DatasetKind::Btad => &["01", "02", "03"],
            DatasetKind::Mpdd => {
                &["bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes"]
            }
            DatasetKind::Jsonl => return None,
        })
    }

    /// The learning rate the paper gives for this dataset (batch 64), where it gives one.
    pub fn paper_lr(&self) -> Option<f64> {
        match self {
            DatasetKind::Mvtec | DatasetKind::Mpdd => Some(7e-4),
            DatasetKind::Visa => Some(1e-3),
            DatasetKind::Btad => Some(9e-4),
            DatasetKind::Jsonl => None,
        }
    }

    /// The published training-set size (all classes), for planning when the data is absent.
    pub fn published_train_images(&self) -> usize {
        match self {
            DatasetKind::Mvtec => 3629,
            DatasetKind::Visa => 8659,
            DatasetKind::Btad => 1799,
            DatasetKind::Mpdd => 888,
            DatasetKind::Jsonl => 100,
        }
    }
}

/// The frozen backbone (`backbone.arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BackboneArch {
    B0,
    B1,
    B2,
    B3,
    /// The paper's.
    B4,
}

string_enum!(
    BackboneArch,
    "backbone.arch",
    [
        (B0, "efficientnet-b0"),
        (B1, "efficientnet-b1"),
        (B2, "efficientnet-b2"),
        (B3, "efficientnet-b3"),
        (B4, "efficientnet-b4")
    ]
);

/// How a coordinator starts jobs (a cluster profile's `launcher`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LauncherKind {
    /// Processes on this machine (mpirun for several ranks).
    Local,
    /// sbatch / squeue / scancel.
    Slurm,
}

string_enum!(LauncherKind, "launcher", [(Local, "local"), (Slurm, "slurm")]);

/// Unified = one model for all classes; separate = one model per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Setting {
    Unified,
    Separate,
}

string_enum!(Setting, "train.setting", [(Unified, "unified"), (Separate, "separate")]);

impl Setting {
    /// The model that serves `class`: "unified" (one model for all classes) or the class
    /// itself. Checkpoints live under `checkpoints/<model>/`.
    pub fn model_name<'a>(&self, class: &'a str) -> &'a str {
        match self {
            Setting::Unified => Setting::Unified.as_str(),
            Setting::Separate => class,
        }
    }
}

/// Where a run computes (`train.device`): "auto" (CUDA when available), "cpu", "cuda"
/// (the rank's local GPU) or "cuda:N". Named `DeviceSpec`, not `Device`, because the
/// code that resolves it works with `tch::Device` beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceSpec {
    #[default]
    Auto,
    Cpu,
    /// `cuda` (None) or `cuda:N`.
    Cuda(Option<usize>),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(None) => f.write_str("cuda"),
            DeviceSpec::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(None)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(|n| DeviceSpec::Cuda(Some(n)))
                .ok_or_else(|| format!("train.device {other:?} must be auto, cpu, cuda or cuda:N")),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// `train.precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// IEEE fp32 everywhere (the CPU default; what the parity tests check).
    Fp32,
    /// fp32 tensors, TF32 matrix products on CUDA (the GPU default; same as fp32 on a CPU).
    Tf32,
    /// bf16 autocast for the model's forward and backward; fp32 master weights, AdamW
    /// state and loss.
    Bf16,
}

string_enum!(Precision, "train.precision", [(Fp32, "fp32"), (Tf32, "tf32"), (Bf16, "bf16")]);

impl Precision {
    /// The precision a run uses: the configured one, else TF32 on CUDA and fp32 on a CPU.
    pub fn resolve(configured: Option<Precision>, device: tch::Device) -> Precision {
        configured.unwrap_or(if device.is_cuda() { Precision::Tf32 } else { Precision::Fp32 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip_and_errors_name_the_key() {
        for k in DatasetKind::ALL {
            assert_eq!(k.as_str().parse::<DatasetKind>().unwrap(), *k);
        }
        for a in BackboneArch::ALL {
            assert_eq!(a.to_string().parse::<BackboneArch>().unwrap(), *a);
        }
        let err = "folder".parse::<DatasetKind>().unwrap_err();
        assert!(err.contains("dataset.kind") && err.contains("folder") && err.contains("visa"), "{err}");
        for d in ["auto", "cpu", "cuda", "cuda:3"] {
            assert_eq!(d.parse::<DeviceSpec>().unwrap().to_string(), d);
        }
        let err = "gpu".parse::<DeviceSpec>().unwrap_err();
        assert!(err.contains("train.device") && err.contains("cuda:N"), "{err}");
        assert_eq!(Setting::Separate.model_name("bottle"), "bottle");
        assert_eq!(Setting::Unified.model_name("bottle"), "unified");
    }
}
