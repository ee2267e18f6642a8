//! Remote stores (s3://, gs://, az://): how long one is given ([`Patience`]), which of
//! its errors mean "not answering" ([`transient`]), and the outage state of this process.

use super::StoreError;
use object_store::ObjectStore;
use std::sync::Arc;
use std::time::Duration;

/// Default retry budget of a remote store, in seconds (`RAS_STORE_RETRY_S` overrides it).
pub const DEFAULT_RETRY_S: u64 = 300;

/// How long a remote store is given: the retry budget of one operation
/// (`RAS_STORE_RETRY_S`) and, when set, the limit of one request (`RAS_STORE_TIMEOUT_S`;
/// unset: object_store's 30 s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Patience {
    pub retry: Duration,
    pub timeout: Option<Duration>,
}

impl Patience {
    /// From the environment; a value that is not a number of seconds is an error naming it.
    pub fn from_env() -> Result<Self, StoreError> {
        Self::parse(
            std::env::var("RAS_STORE_RETRY_S").ok().as_deref(),
            std::env::var("RAS_STORE_TIMEOUT_S").ok().as_deref(),
        )
    }

    pub(super) fn parse(retry: Option<&str>, timeout: Option<&str>) -> Result<Self, StoreError> {
        let secs = |var: &str, v: &str, min: f64| -> Result<Duration, StoreError> {
            match v.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && s >= min => Ok(Duration::from_secs_f64(s)),
                _ => Err(StoreError::Setting(format!(
                    "{var}={v:?} is not a number of seconds{} (unset it for the default)",
                    if min > 0.0 { " above 0" } else { "" }
                ))),
            }
        };
        let retry = match retry.filter(|v| !v.trim().is_empty()) {
            Some(v) => secs("RAS_STORE_RETRY_S", v, 0.0)?,
            None => Duration::from_secs(DEFAULT_RETRY_S),
        };
        let timeout =
            timeout.filter(|v| !v.trim().is_empty()).map(|v| secs("RAS_STORE_TIMEOUT_S", v, 0.001)).transpose()?;
        Ok(Self { retry, timeout })
    }

    /// object_store's retry policy: any number of retries, for `retry` at most.
    pub(super) fn retry_config(&self) -> object_store::RetryConfig {
        object_store::RetryConfig {
            backoff: object_store::BackoffConfig { max_backoff: Duration::from_secs(5), ..Default::default() },
            max_retries: usize::MAX,
            retry_timeout: self.retry,
        }
    }

    /// The request timeout as a client option value (humantime syntax).
    pub(super) fn timeout_value(&self) -> Option<String> {
        self.timeout.map(|t| format!("{}ms", t.as_millis().max(1)))
    }
}

/// Why a store operation was given up: the store did not answer within the retry budget.
/// It is the source of [`StoreError::Unavailable`] (see [`StoreError::is_outage`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "no answer from the store for {waited_s:.1} s, past the retry budget of {budget_s} s \
     (RAS_STORE_RETRY_S: raise it to ride out longer outages; start the run again to resume it)"
)]
pub struct Outage {
    pub waited_s: f64,
    pub budget_s: f64,
    #[source]
    pub source: Box<object_store::Error>,
}

/// Whether a backend error is the store not answering (worth retrying): a connection
/// refused, reset or timed out, or a 5xx / 429 / 408 status. Local-folder errors never are.
pub(super) fn transient(e: &object_store::Error) -> bool {
    let object_store::Error::Generic { .. } = e else { return false };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(h) = c.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            return matches!(h.kind(), K::Connect | K::Request | K::Timeout | K::Interrupted);
        }
        // object_store's RetryError is private: its status is only in its message.
        let text = c.to_string();
        if let Some(i) = text.find("non-2xx status code: ") {
            let code: u16 = text[i + 21..].chars().take(3).collect::<String>().parse().unwrap_or(0);
            return code >= 500 || code == 429 || code == 408;
        }
        if text.contains("Server returned error response") {
            return true;
        }
        cause = c.source();
    }
    false
}

/// What a remote store adds: its patience, and a second client with a short budget
/// ([`QUICK`]) used while the store is known to be down, so that the writes a failing run
/// still attempts (its status, cost record, lease) do not each wait a whole budget.
#[derive(Clone)]
pub(super) struct Remote {
    pub(super) patience: Patience,
    pub(super) quick: Arc<dyn ObjectStore>,
}

/// The budget of store calls made after one gave up, until one succeeds again.
pub(super) const QUICK: Duration = Duration::from_secs(5);

/// Set when a store call gave up (an outage), cleared by the next call that succeeds.
pub(super) static DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the last remote store call of this process gave up (the store is down).
pub fn known_down() -> bool {
    DOWN.load(std::sync::atomic::Ordering::SeqCst)
}

/// A cloud backend for `url` with the retry budget `budget` and the request timeout of
/// `p` (as a client option, so the other client options from the environment stay).
pub(super) fn remote_backend(
    url: &str,
    scheme: &str,
    p: &Patience,
    budget: Duration,
) -> Result<Arc<dyn ObjectStore>, String> {
    use object_store::ClientConfigKey::Timeout;
    let retry = Patience { retry: budget, ..*p }.retry_config();
    Ok(match scheme {
        "s3" => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            let mut b = AmazonS3Builder::from_env().with_url(url).with_retry(retry);
            if let Some(t) = p.timeout_value() {
                b = b.with_config(AmazonS3ConfigKey::Client(Timeout), t);
            }
            Arc::new(b.build().map_err(|e| e.to_string())?)
        }
        "gs" => {
            use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(url).with_retry(retry);
            if let Some(t) = p.timeout_value() {
                b = b.with_config(GoogleConfigKey::Client(Timeout), t);
            }
            Arc::new(b.build().map_err(|e| e.to_string())?)
        }
        "az" | "abfs" | "abfss" | "azure" => {
            use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
            let mut b = MicrosoftAzureBuilder::from_env().with_url(url).with_retry(retry);
            if let Some(t) = p.timeout_value() {
                b = b.with_config(AzureConfigKey::Client(Timeout), t);
            }
            Arc::new(b.build().map_err(|e| e.to_string())?)
        }
        other => return Err(format!("unknown scheme {other:?}; use file://, s3://, gs:// or az://")),
    })
}
