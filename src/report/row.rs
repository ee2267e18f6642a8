//! One row of a report table, the type every writer of tables shares (long-form tables,
//! the paper's layouts, CSV), and the LaTeX escaping they share.

use super::paper::PaperRow;
use crate::config::RunConfig;

/// One row of a report table: a variant's class (or "mean") over its runs (seeds).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub variant: String,
    pub class: String,
    /// Complete runs averaged here. 0: every run of the variant that would have given
    /// this row was cancelled (`ras cancel --run`): its cells say "cancelled".
    pub runs: usize,
    /// Runs of the variant cancelled before they completed (not in the numbers).
    pub cancelled: usize,
    pub i_auroc: f64,
    pub i_std: f64,
    pub p_auroc: f64,
    pub p_std: f64,
    pub paper_i: Option<f64>,
    pub paper_p: Option<f64>,
    /// The training recipe of the variant's runs (`RunConfig::recipe`; several joined by
    /// "; " if its runs differ).
    pub recipe: String,
    /// The paper row this row is compared with (the sweep's `[paper]`), if any.
    pub paper_row: Option<PaperRow>,
    /// AUPRO, image AP, pixel AP, image F1-max, pixel F1-max: (mean, std) in percent.
    pub extra: [(f64, f64); 5],
    /// Against the paper's I-AUROC (None without a paper number): see `verdict`.
    pub verdict_i: Option<super::verdict::Verdict>,
    /// Against the paper's P-AUROC (None without a paper number): from the runs' pixel
    /// histograms (`verdict::pixel_interval_classes`).
    pub verdict_p: Option<super::verdict::Verdict>,
    /// A config of the variant (the seed aside, its runs share it): for grid layouts.
    #[serde(skip)]
    pub config: Option<RunConfig>,
}

impl Row {
    /// A row of cancelled runs only: no numbers, its cells say "cancelled".
    pub fn is_cancelled(&self) -> bool {
        self.runs == 0
    }
}

/// Names of `Row::extra`, in order.
pub const EXTRA_METRICS: [&str; 5] = ["AUPRO", "I-AP", "P-AP", "I-F1max", "P-F1max"];

/// Text made safe for LaTeX (variant labels hold `_`, `"`, `=`).
pub(super) fn tex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '_' | '%' | '&' | '#' | '$' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '"' => out += "\\texttt{\"}",
            '\\' => out += "\\textbackslash{}",
            '~' => out += "\\textasciitilde{}",
            '^' => out += "\\textasciicircum{}",
            _ => out.push(c),
        }
    }
    out
}
