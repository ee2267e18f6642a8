//! The shape of the code, checked on its source so that it stays easy to change:
//! - no import circle: between the crate's top-level modules (`crate::a` used in `b` and
//!   `crate::b` in `a`, directly or round a loop), nor between the files of one folder;
//! - config/ is the bottom of the house: it uses nothing else of the crate;
//! - no file over 600 lines before its tests (`#[cfg(test)]`), but eval/metrics.rs;
//! - the command line's dispatch (src/cli but the clap structs of *args.rs) under 450 lines;
//! - no `#[error("...")]` message prints its own source (the field named `source` or marked
//!   `#[source]`/`#[from]`): the error chain prints it (src/error_text.rs), and a message
//!   that also did said it twice.
//!
//! References are read from the text: `crate::x[::y]` (also inside `use crate::{..}`) and
//! `super::y`, outside comments and test modules. A child module naming its parent
//! (`super::` from a folder's file to its mod.rs) is not a circle: the parent owns it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` -> ["a", "b"]; `src/a/mod.rs` -> ["a"].
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().to_string()).collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

/// The file's text before its test module, without `//` comments.
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let body = text.split("#[cfg(test)]").next().unwrap_or("");
    body.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    (end > 0 && s.as_bytes()[0].is_ascii_lowercase()).then(|| &s[..end])
}

/// Every `prefix` reference in `code`: its first segment and, if any, its second.
fn references(code: &str, prefix: &str) -> Vec<(String, Option<String>)> {
    let mut out = vec![];
    for (i, _) in code.match_indices(prefix) {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // use crate::{a, b::c, d::{e, f}}: the first two segments of each path.
            let inner = &group[..group.find("};").or_else(|| group.find('}')).unwrap_or(group.len())];
            let mut depth = 0;
            let mut start = 0;
            for (j, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        push_path(inner[start..j].trim(), &mut out);
                        start = j + 1;
                    }
                    _ => {}
                }
            }
            push_path(inner[start..].trim(), &mut out);
        } else {
            push_path(rest, &mut out);
        }
    }
    out
}

fn push_path(path: &str, out: &mut Vec<(String, Option<String>)>) {
    let Some(first) = ident_at(path) else { return };
    let second = path[first.len()..].strip_prefix("::").and_then(ident_at).map(String::from);
    out.push((first.to_string(), second));
}

/// Strongly connected components with more than one node (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'g> {
        g: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        out: Vec<Vec<String>>,
    }
    fn visit(t: &mut T, v: &str) {
        let n = t.index.len();
        t.index.insert(v.into(), n);
        t.low.insert(v.into(), n);
        t.stack.push(v.into());
        for w in t.g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.stack.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = vec![];
            loop {
                let w = t.stack.pop().unwrap();
                let done = w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { g: graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: vec![], out: vec![] };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// (top-level graph, per folder: the graph of its files)
type Graphs = (BTreeMap<String, BTreeSet<String>>, BTreeMap<String, BTreeMap<String, BTreeSet<String>>>);

fn graphs() -> Graphs {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut folders: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in &files {
        let m = module_path(f);
        // The binaries (main.rs, bin/, cli/) are not part of the library's layering.
        if m.is_empty() || m[0] == "main" || m[0] == "lib" || m[0] == "bin" || m[0] == "cli" {
            continue;
        }
        let text = code(f);
        let mut targets: Vec<Vec<String>> = vec![];
        for (a, b) in references(&text, "crate::") {
            targets.push([Some(a), b].into_iter().flatten().collect());
        }
        for (a, _) in references(&text, "super::") {
            // super:: from src/x/y.rs names src/x/<a>; from src/x/mod.rs, a top-level module.
            let mut t: Vec<String> = m[..m.len() - 1].to_vec();
            t.push(a);
            targets.push(t);
        }
        for t in targets {
            if t[0] != m[0] {
                top.entry(m[0].clone()).or_default().insert(t[0].clone());
            } else if m.len() >= 2 && t.len() >= 2 && t[1] != m[1] {
                folders.entry(m[0].clone()).or_default().entry(m[1].clone()).or_default().insert(t[1].clone());
            }
        }
    }
    (top, folders)
}

#[test]
fn the_reference_reader_sees_what_rust_sees() {
    let code =
        "use crate::{config::{A, B}, store::Store, rng};\nlet x = crate::train::Trainer::new(); super::paths::X;";
    let got = references(code, "crate::");
    let want = [("config", None), ("store", None), ("rng", None), ("train", None)];
    assert_eq!(got, want.map(|(a, b): (&str, Option<&str>)| (a.to_string(), b.map(String::from))).to_vec());
    // Types (capitalised) are not modules; a second module segment is kept.
    assert_eq!(references("crate::config::batch::x()", "crate::"), vec![("config".into(), Some("batch".into()))]);
    assert_eq!(references(code, "super::"), vec![("paths".to_string(), None)]);
    // A circle of three, and none in a chain.
    let g = |edges: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            m.entry(a.to_string()).or_default().insert(b.to_string());
        }
        m
    };
    assert_eq!(circles(&g(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])), vec![vec!["a", "b", "c"]]);
    assert!(circles(&g(&[("a", "b"), ("b", "c")])).is_empty());
}

#[test]
fn no_import_circle_and_config_is_the_bottom() {
    let (top, folders) = graphs();
    assert!(top.len() > 10, "the reader found too few modules: {top:?}");
    assert_eq!(circles(&top), Vec::<Vec<String>>::new(), "circles between top-level modules");
    for (folder, g) in &folders {
        assert_eq!(circles(g), Vec::<Vec<String>>::new(), "circles between the files of src/{folder}/");
    }
    assert_eq!(top.get("config"), None, "config/ must not use the rest of the crate");
}

#[test]
fn no_file_over_600_lines_before_its_tests_and_a_thin_cli() {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    let lines_before_tests =
        |f: &Path| std::fs::read_to_string(f).unwrap().lines().take_while(|l| !l.starts_with("#[cfg(test)]")).count();
    let long: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("eval/metrics.rs"))
        .map(|f| (f, lines_before_tests(f)))
        .filter(|(_, n)| *n > 600)
        .map(|(f, n)| format!("{} ({n} lines)", f.display()))
        .collect();
    assert!(long.is_empty(), "split these files: {long:?}");
    let cli: usize = files
        .iter()
        .filter(|f| f.parent().is_some_and(|p| p.ends_with("cli")) && !f.to_string_lossy().ends_with("args.rs"))
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .sum();
    assert!(cli < 450, "the CLI's dispatch is {cli} lines: move library work into the library");
}

/// The `#[error("...")]` messages of src that print the variant's (or struct's) source
/// field, as "file:line: field": the text between the attribute and the next `#[error` or
/// item end is read for `source:` fields and `#[source]`/`#[from]` attributes (a tuple
/// field's index is its position among the fields).
fn messages_printing_their_source() -> Vec<String> {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    let mut found = vec![];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let text: String = text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")).collect::<Vec<_>>().join("\n");
        for (at, _) in text.match_indices("#[error(") {
            let rest = &text[at + 8..];
            // The attribute ends at `)]` closing it; the fields follow, up to the next
            // attribute of a variant or the end of the item.
            let Some(end) = rest.find(")]") else { continue };
            let message = &rest[..end];
            if message.trim_start().starts_with("transparent") {
                continue;
            }
            let after = &rest[end + 2..];
            let stop = after.find("#[error(").unwrap_or(after.len());
            let stop = after[..stop].find("\n}").map_or(stop, |s| s.min(stop));
            let body = &after[..stop];
            let mut sources = BTreeSet::new();
            if body.contains("source:") {
                sources.insert("source".to_string());
            }
            for attr in ["#[source]", "#[from]"] {
                for (i, _) in body.match_indices(attr) {
                    let field = body[i + attr.len()..].trim_start();
                    // A named field is `name: Type`; a tuple field starts with its type
                    // (which may be a path: `crate::x::E`).
                    let name: String = field.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    let after_name = field[name.len()..].trim_start();
                    match after_name.strip_prefix(':') {
                        Some(rest) if !name.is_empty() && !rest.starts_with(':') => {
                            sources.insert(name);
                        }
                        // A tuple field: its index is the number of commas before it.
                        _ => {
                            let open = body[..i].rfind('(').unwrap_or(0);
                            sources.insert(body[open..i].matches(',').count().to_string());
                        }
                    }
                }
            }
            for s in &sources {
                if message.contains(&format!("{{{s}}}"))
                    || message.contains(&format!("{{{s}:"))
                    || message.contains(&format!(".{s}"))
                {
                    let line = text[..at].lines().count() + 1;
                    found.push(format!("{}:{line}: {s}", f.display()));
                }
            }
        }
    }
    found
}

#[test]
fn no_error_message_prints_its_source() {
    assert_eq!(
        messages_printing_their_source(),
        Vec::<String>::new(),
        "these messages print their source, which the error chain prints again: drop it from the message"
    );
}
