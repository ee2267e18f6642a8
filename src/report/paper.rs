//! The paper's numbers (configs/paper-tables.csv, compiled in) and the explicit match of a
//! variant with the paper row it reproduces (the sweep file's `[paper]`, see
//! [`PaperMatch`]). Nothing here looks at class names to guess: a variant is compared
//! with a paper number only through the row its `[paper]` templates name.

use crate::config::{PaperMatch, RunConfig};
use std::collections::BTreeMap;

/// The paper's numbers: table,dataset,class,method,setting,metric,value.
pub const PAPER_TABLES: &str = include_str!("../../configs/paper-tables.csv");

/// The number of every row of configs/paper-tables.csv by (table, dataset, row key,
/// method, setting, metric "I" | "P").
pub struct PaperTables {
    values: BTreeMap<[String; 6], f64>,
}

impl PaperTables {
    pub fn load() -> Self {
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .comment(Some(b'#'))
            .flexible(true)
            .from_reader(PAPER_TABLES.as_bytes());
        let mut values = BTreeMap::new();
        for f in reader.records().filter_map(Result::ok) {
            if f.len() != 7 {
                continue;
            }
            if let Ok(v) = f[6].parse::<f64>() {
                values.entry([0, 1, 2, 3, 4, 5].map(|i| f[i].to_string())).or_insert(v);
            }
        }
        Self { values }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn get(&self, table: &str, dataset: &str, row: &str, method: &str, setting: &str, metric: &str) -> Option<f64> {
        self.values.get(&[table, dataset, row, method, setting, metric].map(String::from)).copied()
    }
}

/// The paper row one cell of a report is compared with.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PaperRow {
    /// Looked up in this order.
    pub tables: Vec<String>,
    pub dataset: String,
    pub row: String,
    pub method: String,
    pub setting: String,
}

impl PaperRow {
    /// The first of its tables that has the metric ("I" or "P").
    pub fn value(&self, paper: &PaperTables, metric: &str) -> Option<f64> {
        self.tables.iter().find_map(|t| paper.get(t, &self.dataset, &self.row, &self.method, &self.setting, metric))
    }

    /// `table4 gate_only (RAS, mvtec unified)`.
    pub fn label(&self) -> String {
        format!("{} {} ({}, {} {})", self.tables.join("+"), self.row, self.method, self.dataset, self.setting)
    }
}

/// A noise scale as the paper writes it (`alpha=30`).
pub use crate::config::sweep_file::alpha;

/// The paper row of one report cell: `class` is a class or "mean", `scale` a test-time
/// noise scale (noise tables). None when the row template is per class and the cell is
/// not, or the other way round: a template without `{class}` compares only the mean.
pub fn paper_row(m: &PaperMatch, cfg: &RunConfig, class: &str, scale: Option<f64>) -> Result<Option<PaperRow>, String> {
    if !m.row.contains("{class}") && class != "mean" {
        return Ok(None);
    }
    Ok(Some(PaperRow {
        tables: m.tables.clone(),
        dataset: cfg.dataset.kind.to_string(),
        row: m.render(&m.row, cfg, class, scale)?,
        method: m.render(&m.method, cfg, class, scale)?,
        setting: cfg.train.setting.as_str().to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(sets: &[&str]) -> RunConfig {
        let p = std::env::temp_dir().join(format!("ras-paper-{}-{}.toml", std::process::id(), sets.len()));
        std::fs::write(&p, "name = \"t\"\n[dataset]\nroot = \"/data\"\n").unwrap();
        let c = RunConfig::load(&p, &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        std::fs::remove_file(&p).ok();
        c
    }

    fn m(toml_text: &str) -> PaperMatch {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn every_row_of_the_csv_is_read_including_quoted_commas() {
        let p = PaperTables::load();
        assert_eq!(p.get("table1", "mvtec", "bottle", "RAS", "unified", "I"), Some(100.0));
        assert_eq!(p.get("table4", "mvtec", "gate_only", "RAS", "unified", "P"), Some(97.3));
        assert_eq!(p.get("table5", "mvtec", "Te=1,Td=2", "RAS", "unified", "I"), Some(97.8));
        assert_eq!(p.get("table6", "mvtec", "alpha=30", "UniAD", "unified", "I"), Some(95.1));
        assert_eq!(p.get("table3", "visa", "mean", "DeSTSeg", "unified", "P"), Some(96.0));
        let lines = PAPER_TABLES.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).count();
        assert_eq!(p.len(), lines, "one value per data line");
    }

    #[test]
    fn templates_name_the_row_each_variant_reproduces() {
        let paper = PaperTables::load();
        let t4 = m("tables = [\"table4\"]\nrow = \"{model.decoder}\"\n[rename.\"model.decoder\"]\nras = \"gate_and_transformer\"\n");
        let r = paper_row(&t4, &cfg(&["model.decoder=\"gate_only\""]), "mean", None).unwrap().unwrap();
        assert_eq!((r.value(&paper, "I"), r.value(&paper, "P")), (Some(97.5), Some(97.3)));
        let r = paper_row(&t4, &cfg(&[]), "mean", None).unwrap().unwrap();
        assert_eq!(r.row, "gate_and_transformer");
        assert_eq!(r.value(&paper, "I"), Some(98.4));
        // Only the mean of a variant is compared when the row is not per class.
        assert_eq!(paper_row(&t4, &cfg(&[]), "bottle", None).unwrap(), None);

        let t5 = m("tables = [\"table5\"]\nrow = \"Te={model.encoder_layers},Td={model.decoder_layers}\"\n");
        let r =
            paper_row(&t5, &cfg(&["model.encoder_layers=1", "model.decoder_layers=2"]), "mean", None).unwrap().unwrap();
        assert_eq!((r.value(&paper, "I"), r.value(&paper, "P")), (Some(97.8), Some(97.4)));

        let t6 = m("tables = [\"table6\"]\nrow = \"alpha={alpha}\"\nmethod = \"{model.decoder}\"\n[rename.\"model.decoder\"]\nras = \"RAS\"\nuniad = \"UniAD\"\n");
        let r = paper_row(&t6, &cfg(&["model.decoder=\"uniad\""]), "mean", Some(30.0)).unwrap().unwrap();
        assert_eq!(
            (r.row.as_str(), r.method.as_str(), r.value(&paper, "I"), r.value(&paper, "P")),
            ("alpha=30", "UniAD", Some(95.1), Some(96.5))
        );

        let t12 = m("tables = [\"table1\", \"table2\"]\n");
        let r = paper_row(&t12, &cfg(&["train.setting=\"separate\""]), "mean", None).unwrap().unwrap();
        assert_eq!((r.value(&paper, "I"), r.value(&paper, "P")), (Some(98.6), Some(97.8)));
        let r = paper_row(&t12, &cfg(&[]), "cable", None).unwrap().unwrap();
        assert_eq!(r.value(&paper, "I"), Some(99.2));
        // A class the paper does not have has no number (never a guess).
        assert_eq!(paper_row(&t12, &cfg(&[]), "disc", None).unwrap().unwrap().value(&paper, "I"), None);

        let bad = m("tables = [\"table4\"]\nrow = \"{model.decodr}\"\n");
        assert!(paper_row(&bad, &cfg(&[]), "mean", None).unwrap_err().contains("model.decodr"));
    }
}
