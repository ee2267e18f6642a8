//! HTTP: one handler reads the path itself (so that what it accepts is spelled here, in
//! one place), checks the token, validates names against the store layout, and answers
//! with a page, its fragment (live updates), its JSON, a picture, or a plain error.

use super::dashboard::{Dashboard, Route};
use super::pages::PageError;
use super::secrets::Secrets;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use std::sync::{Arc, Mutex};

pub struct AppState {
    pub dashboard: Mutex<Dashboard>,
    pub token: Option<String>,
    pub secrets: Secrets,
    pub refresh_ms: u64,
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn respond(status: StatusCode, content_type: &str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).expect("content type"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    r
}

/// A plain-text answer (errors: 401, 404, 405, 500).
fn plain(status: StatusCode, text: &str) -> Response {
    respond(
        status,
        "text/plain; charset=utf-8",
        format!("{} {}: {text}\n", status.as_u16(), status.canonical_reason().unwrap_or("")),
    )
}

/// `%XX` decoded; None for bad escapes or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A run id or sweep name as the store layout allows them (`[A-Za-z0-9._-]`, not `.` or
/// `..`, at most 200 characters): anything else cannot name a run or sweep, so it is
/// refused before the store is asked anything.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('.')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// A picture key: `runs/<id>/pictures/<segments>.png`, every segment a valid name.
fn valid_picture(key: &str) -> bool {
    let parts: Vec<&str> = key.split('/').collect();
    parts.len() >= 5
        && parts[0] == "runs"
        && parts[2] == "pictures"
        && key.ends_with(".png")
        && parts[1..].iter().all(|p| valid_name(p))
}

enum Want {
    Page(Route),
    Api(Route),
    Picture(String),
    Asset(&'static str, &'static str),
}

/// What a path and query ask for; Err: a 404 message.
fn route(path: &str, query: &[(String, String)]) -> Result<Want, String> {
    let raw: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut segs = vec![];
    for r in &raw {
        segs.push(percent_decode(r).ok_or_else(|| format!("{path}: not a valid URL path"))?);
    }
    let (api, segs) =
        if segs.first().map(String::as_str) == Some("api") { (true, &segs[1..]) } else { (false, &segs[..]) };
    let name = |what: &str, s: &str| {
        if valid_name(s) {
            Ok(s.to_string())
        } else {
            Err(format!("{s:?} is not a {what} name (letters, digits, '.', '-', '_'; not starting with '.')"))
        }
    };
    let runs: Vec<String> = query.iter().filter(|(k, _)| k == "run").map(|(_, v)| v.clone()).collect();
    let home = || -> Result<Route, String> {
        let mut filters = vec![];
        for (_, v) in query.iter().filter(|(k, _)| k == "filter") {
            for f in v.split_whitespace() {
                filters.push(f.parse().map_err(|e: crate::runs::RunsError| e.to_string())?);
            }
        }
        Ok(Route::Home(filters))
    };
    let route = match segs.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [""] if !api => home()?,
        ["home"] if api => home()?,
        ["sweep", n] => Route::Sweep(name("sweep", n)?),
        ["run", id] => Route::Run(name("run", id)?),
        ["compare"] => Route::Compare(runs.iter().map(|r| name("run", r)).collect::<Result<_, _>>()?),
        ["assets", "live.js"] if !api => return Ok(Want::Asset(super::html::SCRIPT, "text/javascript; charset=utf-8")),
        ["assets", "style.css"] if !api => return Ok(Want::Asset(super::html::STYLE, "text/css; charset=utf-8")),
        ["object", rest @ ..] if !api => {
            let key = rest.join("/");
            if !valid_picture(&key) {
                return Err(format!("{key:?} is not a picture of a run (runs/<id>/pictures/.../<name>.png)"));
            }
            return Ok(Want::Picture(key));
        }
        _ => {
            return Err(format!(
            "no page {path}: pages are /, /sweep/NAME, /run/ID, /compare?run=A&run=B, and /api/ before each for JSON"
        ))
        }
    };
    Ok(if api { Want::Api(route) } else { Want::Page(route) })
}

/// Whether the request carries the token: `Authorization: Bearer T`, the cookie set by
/// an earlier `?token=T`, or `?token=T` itself.
fn authorised(token: &str, headers: &HeaderMap, query: &[(String, String)]) -> bool {
    let same = |given: &str| {
        // Compared in constant time: the token's length is no secret, its bytes are.
        given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(same);
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix("ras_token="))
        .any(same);
    bearer || cookie || query.iter().any(|(k, v)| k == "token" && same(v))
}

pub async fn handle(State(app): State<Arc<AppState>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "ras serve only reads: GET pages");
    }
    let query: Vec<(String, String)> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let path = uri.path().to_string();
    // The path only: a token in the query never reaches a log.
    tracing::info!(target: "ras::serve", "GET {path}");
    let mut set_cookie = None;
    if let Some(token) = &app.token {
        if !authorised(token, &headers, &query) {
            return plain(
                StatusCode::UNAUTHORIZED,
                "this ras serve needs its token: open the page once as URL?token=TOKEN (the browser then keeps it in a cookie), or send the header Authorization: Bearer TOKEN",
            );
        }
        if query.iter().any(|(k, _)| k == "token") {
            set_cookie = Some(format!("ras_token={token}; HttpOnly; SameSite=Strict; Path=/"));
        }
    }
    let want = match route(&path, &query) {
        Ok(w) => w,
        Err(why) => return plain(StatusCode::NOT_FOUND, &app.secrets.redact(&why)),
    };
    let fragment = query.iter().any(|(k, v)| k == "fragment" && v == "1");
    let since = query.iter().find(|(k, _)| k == "since").map(|(_, v)| v.clone());
    let app2 = app.clone();
    let answer = tokio::task::spawn_blocking(move || -> Result<Response, PageError> {
        let mut d = app2.dashboard.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match want {
            Want::Asset(text, ct) => respond(StatusCode::OK, ct, text),
            Want::Picture(key) => match d.picture(&key)? {
                Some(bytes) => respond(StatusCode::OK, "image/png", bytes),
                None => plain(StatusCode::NOT_FOUND, &format!("no picture {key} in store {}", d.store_url())),
            },
            Want::Api(route) => {
                let r = d.page(&route)?;
                respond(StatusCode::OK, "application/json", app2.secrets.redact(&r.json))
            }
            Want::Page(route) => {
                let r = d.page(&route)?;
                if fragment {
                    if since.as_deref() == Some(r.version.as_str()) {
                        respond(StatusCode::NO_CONTENT, "text/plain", "")
                    } else {
                        let mut resp =
                            respond(StatusCode::OK, "text/html; charset=utf-8", app2.secrets.redact(&r.main));
                        resp.headers_mut().insert("X-Ras-Version", HeaderValue::from_str(&r.version).expect("hex"));
                        resp
                    }
                } else {
                    let page = super::html::page(&r.title, d.store_url(), &r.main, &r.version, app2.refresh_ms);
                    respond(StatusCode::OK, "text/html; charset=utf-8", app2.secrets.redact(&page))
                }
            }
        })
    })
    .await;
    let mut resp = match answer {
        Ok(Ok(r)) => r,
        Ok(Err(PageError::NotFound(why))) => plain(StatusCode::NOT_FOUND, &app.secrets.redact(&why)),
        Ok(Err(PageError::Store(e))) => {
            let why = app.secrets.redact(&crate::error_text::chain(&e));
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("{why} (the server keeps serving: reload when the store answers)"),
            )
        }
        Err(e) => {
            tracing::error!("page {path} failed: {e}");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "this page failed to build (a bug in ras: the log says where); other pages still work",
            )
        }
    };
    if let Some(c) = set_cookie {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn names_outside_the_layout_are_refused() {
        for bad in ["..", ".", "", "a/b", "a\\b", ".hidden", "a b", "ä"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_name("quickstart-1a2b3c4d"));
        for path in [
            "/run/..",
            "/run/%2e%2e",
            "/sweep/..%2fruns",
            "/object/runs/a/../b.png",
            "/object/features/x.png",
            "/object/runs/a/checkpoints/x.png",
            "/etc/passwd",
            "/run/a/b",
        ] {
            assert!(route(path, &[]).is_err(), "{path}");
        }
        assert!(matches!(route("/object/runs/a/pictures/bottle/x.png", &[]), Ok(Want::Picture(_))));
        assert!(matches!(route("/api/run/a", &[]), Ok(Want::Api(Route::Run(_)))));
        assert!(
            matches!(route("/compare", &q(&[("run", "a"), ("run", "b")])), Ok(Want::Page(Route::Compare(v))) if v.len() == 2)
        );
        assert!(route("/compare", &q(&[("run", "../x")])).is_err());
    }

    #[test]
    fn the_token_is_checked_in_every_place_it_can_come_from() {
        let mut h = HeaderMap::new();
        assert!(!authorised("s3cret", &h, &[]));
        assert!(authorised("s3cret", &h, &q(&[("token", "s3cret")])));
        assert!(!authorised("s3cret", &h, &q(&[("token", "s3cre")])));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        assert!(authorised("s3cret", &h, &[]));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=b; ras_token=s3cret"));
        assert!(authorised("s3cret", &h, &[]));
    }
}
