//! `--set key.path=value` overrides, applied to a config's parsed (spanned) TOML table
//! before it is deserialised, so an override meets exactly the checks a line in the file
//! would, and an error caused by one is blamed on the `--set` argument, not on the file.

use toml::de::{DeArray, DeString, DeTable, DeValue};
use toml::Spanned;

/// Where override `index` lives in the combined "file + overrides" span space: the
/// one-byte range just past the file text, one per override. Every key and value an
/// override brings carries this span, so a deserialisation error whose span lies past
/// the end of the file names the override that caused it ([`blame`]).
pub fn span_of(file_len: usize, index: usize) -> std::ops::Range<usize> {
    let at = file_len + 1 + index;
    at..at + 1
}

/// Which override (by index) a span from [`span_of`] belongs to; `None` for a span in the file.
pub fn blame(file_len: usize, span: &std::ops::Range<usize>) -> Option<usize> {
    (span.start > file_len).then(|| span.start - file_len - 1)
}

/// Applies each `key.path=value` to `table` (a document parsed from a file of
/// `file_len` bytes). The value is parsed as a TOML value (`3`, `1e-3`, `true`, `"x"`,
/// `[1, 2]`), else taken as a bare string; intermediate tables are created. On error
/// returns the index of the override at fault and what is wrong with it.
pub fn apply<'i>(table: &mut DeTable<'i>, overrides: &'i [String], file_len: usize) -> Result<(), (usize, String)> {
    for (i, o) in overrides.iter().enumerate() {
        let span = span_of(file_len, i);
        let (key, raw) = o.split_once('=').ok_or_else(|| (i, "must look like key.path=value".to_string()))?;
        let value = match DeValue::parse(raw.trim()) {
            Ok(v) => relabel(v.into_inner(), &span),
            Err(_) => Spanned::new(span.clone(), DeValue::String(DeString::Borrowed(raw))),
        };
        let parts: Vec<&str> = key.trim().split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err((i, format!("{key:?} is not a key path like train.lr")));
        }
        let mut cur = &mut *table;
        for part in &parts[..parts.len() - 1] {
            let entry = cur.entry(Spanned::new(span.clone(), DeString::Borrowed(*part)));
            let value = entry.or_insert_with(|| Spanned::new(span.clone(), DeValue::Table(DeTable::new())));
            cur = match value.get_mut() {
                DeValue::Table(t) => t,
                _ => return Err((i, format!("{part} is not a table"))),
            };
        }
        let last = parts[parts.len() - 1];
        // Replacing keeps the file's key (and its span); the value is the override's.
        match cur.get_mut(last) {
            Some(v) => *v = value,
            None => {
                cur.insert(Spanned::new(span.clone(), DeString::Borrowed(last)), value);
            }
        }
    }
    Ok(())
}

/// For an override whose value looks like a list but is not TOML (so it was taken as a bare
/// string), what the
/// TOML list it probably meant looks like, as a hint after the error its type caused:
/// `dataset.classes=[bottle]` -> `; [bottle] is not TOML (read as a string): write
/// --set 'dataset.classes=["bottle"]'`. None when the value parses as TOML.
pub fn toml_hint(arg: &str) -> Option<String> {
    let (key, raw) = arg.split_once('=')?;
    let raw = raw.trim();
    // Only a list is hinted: a bare word is a string as meant, and quoting a word where a
    // number was expected would not help.
    if !raw.starts_with('[') || DeValue::parse(raw).is_ok() {
        return None;
    }
    let quote = |s: &str| -> String {
        let s = s.trim();
        if DeValue::parse(s).is_ok() {
            s.to_string()
        } else {
            toml::Value::String(s.trim_matches(|c| c == '"' || c == '\'').to_string()).to_string()
        }
    };
    let inner = raw.trim_start_matches('[').trim_end_matches(']');
    let items: Vec<String> = inner.split(',').filter(|s| !s.trim().is_empty()).map(quote).collect();
    let meant = format!("[{}]", items.join(", "));
    Some(format!("; {raw} is not TOML (so it was read as a string): write --set '{}={meant}'", key.trim()))
}

/// `value` with every span inside it (array items, table keys) set to `span`: the
/// parser's spans are relative to the override's text, which is not the file.
fn relabel<'i>(value: DeValue<'i>, span: &std::ops::Range<usize>) -> Spanned<DeValue<'i>> {
    let value = match value {
        DeValue::Array(items) => {
            let mut out = DeArray::new();
            for item in items.iter() {
                out.push(relabel(item.get_ref().clone(), span));
            }
            DeValue::Array(out)
        }
        DeValue::Table(t) => {
            let mut out = DeTable::new();
            for (k, v) in t {
                out.insert(Spanned::new(span.clone(), k.into_inner()), relabel(v.into_inner(), span));
            }
            DeValue::Table(out)
        }
        other => other,
    };
    Spanned::new(span.clone(), value)
}

/// `key=value` as an override string (what a sweep's `[set]`, grid and runs become).
pub fn format(key: &str, value: &toml::Value) -> String {
    format!("{key}={value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_toml_else_string() {
        let over: Vec<String> = vec!["a.b= 3".into(), "a.c=hello".into(), "d=[1, 2]".into()];
        let mut t = DeTable::new();
        apply(&mut t, &over, 10).unwrap();
        let a = t.get("a").unwrap().get_ref().as_table().unwrap();
        assert_eq!(a.get("b").unwrap().get_ref().as_integer().map(|i| i.as_str().to_string()), Some("3".into()));
        assert_eq!(a.get("c").unwrap().get_ref().as_str(), Some("hello"));
        let d = t.get("d").unwrap();
        assert_eq!(d.get_ref().as_array().map(|a| a.len()), Some(2));
        // Every span an override brings points past the file, at that override.
        assert_eq!(blame(10, &d.span()), Some(2));
        assert_eq!(blame(10, &d.get_ref().as_array().unwrap()[1].span()), Some(2));
        assert_eq!(blame(10, &(3..5)), None);
        let bad: Vec<String> = vec!["x=1".into(), "a.b.c=1".into()];
        let (i, err) = apply(&mut t, &bad, 10).unwrap_err();
        assert!(i == 1 && err.contains("b") && err.contains("not a table"), "{i} {err}");
        let bad: Vec<String> = vec!["novalue".into()];
        assert!(apply(&mut t, &bad, 10).unwrap_err().1.contains("key.path=value"));
    }

    #[test]
    fn a_value_that_is_not_toml_gets_the_toml_it_needs() {
        assert_eq!(
            toml_hint("dataset.classes=[bottle]").unwrap(),
            "; [bottle] is not TOML (so it was read as a string): write --set 'dataset.classes=[\"bottle\"]'"
        );
        assert!(toml_hint("dataset.classes=[bottle, 3,cable]").unwrap().ends_with("=[\"bottle\", 3, \"cable\"]'"));
        assert_eq!(toml_hint("dataset.classes=[\"bottle\"]"), None);
        assert_eq!(toml_hint("train.lr=1e-3"), None);
        assert_eq!(toml_hint("train.lr=fast"), None, "a word is a string as meant");
    }
}
