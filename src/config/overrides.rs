//! `--set key.path=value` overrides, applied to a config's TOML table before it is
//! parsed, so an override meets exactly the checks a line in the file would.

/// Applies each `key.path=value` to `table`. The value is parsed as a TOML value
/// (`3`, `1e-3`, `true`, `"x"`, `[1, 2]`), else taken as a bare string; intermediate
/// tables are created. The error names the override.
pub fn apply(table: &mut toml::Table, overrides: &[String]) -> Result<(), String> {
    for o in overrides {
        let (key, raw) = o.split_once('=').ok_or_else(|| format!("override {o:?} must look like key.path=value"))?;
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let mut cur = &mut *table;
        let parts: Vec<&str> = key.trim().split('.').collect();
        for part in &parts[..parts.len() - 1] {
            cur = cur
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .ok_or_else(|| format!("override {key}: {part} is not a table"))?;
        }
        cur.insert(parts[parts.len() - 1].to_string(), value);
    }
    Ok(())
}

/// `key=value` as an override string (what a sweep's `[set]`, grid and runs become).
pub fn format(key: &str, value: &toml::Value) -> String {
    format!("{key}={value}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_parse_as_toml_else_string() {
        let mut t = toml::Table::new();
        super::apply(&mut t, &["a.b=3".into(), "a.c=hello".into(), "d=[1, 2]".into()]).unwrap();
        assert_eq!(t["a"]["b"].as_integer(), Some(3));
        assert_eq!(t["a"]["c"].as_str(), Some("hello"));
        assert_eq!(t["d"].as_array().map(|a| a.len()), Some(2));
        let err = super::apply(&mut t, &["a.b.c=1".into()]).unwrap_err();
        assert!(err.contains("a.b.c") && err.contains("not a table"), "{err}");
        assert!(super::apply(&mut t, &["novalue".into()]).unwrap_err().contains("key.path=value"));
    }
}
