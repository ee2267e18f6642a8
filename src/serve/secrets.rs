//! What must never leave the server: the values of the credentials in its environment
//! (the store's keys and tokens), its own token, and a password in the store URL. Every
//! text answer passes through [`Secrets::redact`], whatever a record or a job log holds.

/// Environment variables whose value is a credential: by name (any that contains one of
/// these words), so that every backend's spelling is covered (AWS_SECRET_ACCESS_KEY,
/// AWS_SESSION_TOKEN, GOOGLE_SERVICE_ACCOUNT_KEY, AZURE_STORAGE_ACCOUNT_KEY, ...).
const CREDENTIAL_WORDS: [&str; 6] = ["SECRET", "TOKEN", "PASSWORD", "KEY", "CREDENTIAL", "SAS"];

/// Values shorter than this are not redacted (they would match ordinary words: `1`, `true`).
const MIN_LEN: usize = 6;

#[derive(Debug, Default, Clone)]
pub struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    /// The credentials of this process's environment, the server's token, and the store
    /// URL's password.
    pub fn from_env(token: Option<&str>, store_url: &str) -> Self {
        let mut values: Vec<String> = std::env::vars()
            .filter(|(k, _)| {
                let k = k.to_ascii_uppercase();
                CREDENTIAL_WORDS.iter().any(|w| k.contains(w))
            })
            .map(|(_, v)| v)
            .collect();
        values.extend(token.map(String::from));
        if let Ok(u) = url::Url::parse(store_url) {
            values.extend(u.password().map(String::from));
        }
        Self::of(values)
    }

    pub fn of(values: Vec<String>) -> Self {
        let mut values: Vec<String> = values.into_iter().filter(|v| v.len() >= MIN_LEN).collect();
        // Longest first: a secret that contains another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Self { values }
    }

    /// `text` with every secret value replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        let mut s = text.to_string();
        for v in &self.values {
            if s.contains(v.as_str()) {
                s = s.replace(v.as_str(), "[redacted]");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_values_are_replaced_wherever_they_appear() {
        let s = super::Secrets::of(vec!["wJalrXUtnFEMI".into(), "tok".into(), "abcdef123456".into()]);
        assert_eq!(s.redact("key=wJalrXUtnFEMI, t=tok; abcdef123456!"), "key=[redacted], t=tok; [redacted]!");
    }
}
