//! The CSV files of a report, written with the `csv` crate: RFC 4180 quoting, `\n` line
//! ends. The first column, the variant label (spaces, `=`, `"` of TOML strings), is always
//! quoted, as in every report so far, so that a row is found by its quoted label
//! (`"<variant>",<class>,...`); the other fields are quoted only where they need it.

use super::noise::NoiseSeries;
use super::row::Row;
use super::ReportError;
use ::csv::{QuoteStyle, Terminator, WriterBuilder};

/// One CSV line (with its `\n`) of `fields`, quoted in `style`.
fn line<T: AsRef<[u8]>>(style: QuoteStyle, fields: impl IntoIterator<Item = T>) -> Result<Vec<u8>, ReportError> {
    let mut w = WriterBuilder::new().quote_style(style).terminator(Terminator::Any(b'\n')).from_writer(vec![]);
    w.write_record(fields)?;
    w.into_inner().map_err(|e| ReportError::Csv(e.into_error().into()))
}

/// CSV bytes: `header`, then a line per record: its label, always quoted, and the other
/// fields. (The csv crate has one quote style per writer: the label is a line of its
/// own in style `Always` without its line end, the rest a line in style `Necessary`.)
fn text(header: &[&str], records: impl IntoIterator<Item = (String, Vec<String>)>) -> Result<Vec<u8>, ReportError> {
    let mut out = line(QuoteStyle::Necessary, header)?;
    for (label, rest) in records {
        let mut quoted = line(QuoteStyle::Always, [label])?;
        quoted.pop();
        out.extend(quoted);
        out.push(b',');
        out.extend(line(QuoteStyle::Necessary, rest)?);
    }
    Ok(out)
}

/// Ours, the paper's and the difference, in percent with 4 decimals; empty where the
/// paper has no number, and ours empty in a row of cancelled runs only (runs 0); the last
/// column counts the variant's cancelled runs.
pub(super) fn rows(rows: &[Row]) -> Result<Vec<u8>, ReportError> {
    let num = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
    text(
        &[
            "variant",
            "class",
            "runs",
            "i_auroc",
            "i_std",
            "paper_i",
            "delta_i",
            "p_auroc",
            "p_std",
            "paper_p",
            "delta_p",
            "aupro",
            "aupro_std",
            "i_ap",
            "i_ap_std",
            "p_ap",
            "p_ap_std",
            "i_f1max",
            "i_f1max_std",
            "p_f1max",
            "p_f1max_std",
            "paper_row",
            "cancelled",
        ],
        rows.iter().map(|r| {
            // (NaN in a row of cancelled runs only: left empty.)
            let num = |v: Option<f64>| num(v.filter(|x| x.is_finite()));
            let rest = vec![
                r.class.clone(),
                r.runs.to_string(),
                num(Some(r.i_auroc)),
                num(Some(r.i_std)),
                num(r.paper_i),
                num(r.paper_i.map(|p| r.i_auroc - p)),
                num(Some(r.p_auroc)),
                num(Some(r.p_std)),
                num(r.paper_p),
                num(r.paper_p.map(|p| r.p_auroc - p)),
            ];
            let mut rest = rest;
            for (m, sd) in r.extra {
                rest.push(num(Some(m)));
                rest.push(num(Some(sd)));
            }
            rest.push(r.paper_row.as_ref().map(|p| p.label()).unwrap_or_default());
            rest.push(r.cancelled.to_string());
            (r.variant.clone(), rest)
        }),
    )
}

/// The noise table: a line per variant and scale.
pub(super) fn noise(series: &[NoiseSeries]) -> Result<Vec<u8>, ReportError> {
    text(
        &["variant", "scale", "runs", "i_auroc", "p_auroc"],
        series.iter().flat_map(|s| {
            s.points.iter().map(|p| {
                (
                    s.variant.clone(),
                    vec![
                        p.scale.to_string(),
                        p.runs.to_string(),
                        format!("{:.4}", p.i_auroc),
                        format!("{:.4}", p.p_auroc),
                    ],
                )
            })
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::noise::NoisePoint;

    fn row(variant: &str, class: &str, paper: Option<f64>) -> Row {
        Row {
            variant: variant.into(),
            class: class.into(),
            runs: 2,
            cancelled: 0,
            i_auroc: 97.25,
            i_std: 0.5,
            p_auroc: 95.0,
            p_std: 0.25,
            paper_i: paper,
            paper_p: None,
            recipe: String::new(),
            paper_row: None,
            extra: [(1.0, 0.5); 5],
            verdict_i: None,
            verdict_p: None,
            config: None,
        }
    }

    #[test]
    fn rows_quote_the_label_always_and_other_fields_where_needed() {
        let csv = rows(&[row("demo model.decoder=\"ras\"", "mean", Some(98.0)), row("demo", "a,b", None)]).unwrap();
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "variant,class,runs,i_auroc,i_std,paper_i,delta_i,p_auroc,p_std,paper_p,delta_p,aupro,aupro_std,i_ap,i_ap_std,p_ap,p_ap_std,i_f1max,i_f1max_std,p_f1max,p_f1max_std,paper_row,cancelled\n\
             \"demo model.decoder=\"\"ras\"\"\",mean,2,97.2500,0.5000,98.0000,-0.7500,95.0000,0.2500,,,1.0000,0.5000,1.0000,0.5000,1.0000,0.5000,1.0000,0.5000,1.0000,0.5000,,0\n\
             \"demo\",\"a,b\",2,97.2500,0.5000,,,95.0000,0.2500,,,1.0000,0.5000,1.0000,0.5000,1.0000,0.5000,1.0000,0.5000,1.0000,0.5000,,0\n"
        );
    }

    #[test]
    fn noise_lines_are_one_per_variant_and_scale() {
        let point = |scale: f64| NoisePoint {
            scale,
            runs: 1,
            i_auroc: 90.0,
            p_auroc: 80.125,
            i_std: 0.0,
            p_std: 0.0,
            intervals: None,
        };
        let series =
            [NoiseSeries { variant: "demo model.encoder_layers=1".into(), points: vec![point(0.0), point(12.5)] }];
        assert_eq!(
            String::from_utf8(noise(&series).unwrap()).unwrap(),
            "variant,scale,runs,i_auroc,p_auroc\n\"demo model.encoder_layers=1\",0,1,90.0000,80.1250\n\"demo model.encoder_layers=1\",12.5,1,90.0000,80.1250\n"
        );
    }
}
