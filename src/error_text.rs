//! How an error reads: its message, then each cause once. The one spelling of an error
//! chain, used by the binary's `error:` line and by the records a failed run leaves.
//!
//! The crate's own messages never print their source (tests/architecture.rs checks it):
//! the chain does. Errors of other crates sometimes do (object_store's local-file errors
//! end with the `io::Error` that is also their source), so a cause whose text the line
//! already holds is not printed again.

use std::error::Error;

/// `err` and its causes, joined by ": ", each clause once.
pub fn chain(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let clause = c.to_string();
        if !clause.is_empty() && !text.contains(&clause) {
            text.push_str(": ");
            text.push_str(&clause);
        }
        cause = c.source();
    }
    text
}

/// The clauses of `line` (split at ": ") that appear more than once: empty for a line
/// that says each thing once. Tests of the CLI's messages use it.
pub fn repeated_clauses(line: &str) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut repeated = vec![];
    for clause in line.split(": ").map(str::trim).filter(|c| c.len() > 3) {
        if !seen.insert(clause) && !repeated.iter().any(|r: &String| r == clause) {
            repeated.push(clause.to_string());
        }
    }
    repeated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read config {path}")]
    struct ReadConfig {
        path: String,
        source: std::io::Error,
    }

    /// A foreign error that prints its own source, as object_store's do.
    #[derive(Debug, thiserror::Error)]
    #[error("Generic error: {source}")]
    struct Embeds {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("store file://x: cannot get a")]
    struct Outer {
        source: Embeds,
    }

    fn not_found() -> std::io::Error {
        std::io::Error::from_raw_os_error(2)
    }

    #[test]
    fn each_cause_is_said_once() {
        let e = ReadConfig { path: "configs/demo.toml".into(), source: not_found() };
        let text = chain(&e);
        assert_eq!(text, "cannot read config configs/demo.toml: No such file or directory (os error 2)");
        assert!(repeated_clauses(&text).is_empty());
        let e = Outer { source: Embeds { source: not_found() } };
        let text = chain(&e);
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
        assert!(text.starts_with("store file://x: cannot get a: Generic error: No such file"), "{text}");
    }

    #[test]
    fn repeated_clauses_are_found() {
        let line = "cannot read config a.toml: No such file or directory (os error 2): cannot read config a.toml: No such file or directory (os error 2)";
        assert_eq!(repeated_clauses(line), vec!["cannot read config a.toml", "No such file or directory (os error 2)"]);
        assert!(repeated_clauses("a key: b value: c thing").is_empty());
    }
}
