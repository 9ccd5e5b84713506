//! Who may write through this node from a browser, and the headers that keep the page to
//! itself.
//!
//! A node publishes under its own key whatever `POST /api/messages`, `/commit` and `/add`
//! ask, so another website must not be able to make a visitor's browser ask. A browser says
//! where a request comes from (`Sec-Fetch-Site`, and `Origin` on most writes); curl and
//! scripts say nothing and keep working. A write is refused (403) when it is cross-site:
//! `Sec-Fetch-Site` is `cross-site` or `same-site` (another port or subdomain is another
//! app), or, from browsers too old to send it, `Origin` names another host than the one
//! asked. `--allow-origin URL` opens the API to named web apps, with CORS answers to their
//! preflights. Typing `/commit?msg=…` in the address bar sends `Sec-Fetch-Site: none` and is
//! allowed. (A name that an attacker points at 127.0.0.1 looks same-origin to the browser:
//! `Host` is checked against the node's names at the door, `crate::door`, before any of
//! this.)
//!
//! Every response carries a Content-Security-Policy that lets the page run and nothing else:
//! scripts and WebAssembly from this node (plus the page's one inline loader, by hash), its own
//! inline style by hash, connections to this node and to the `ws:`/`wss:` peers the page
//! links to, and no framing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use warp::http::HeaderValue;
use warp::http::header::HeaderMap;

/// Web apps allowed to write through this node (`--allow-origin`), as `scheme://host[:port]`.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    allowed: Vec<String>,
    /// Writes refused as cross-site (shown in `/api/status`).
    refused: Arc<AtomicU64>,
}

impl Origins {
    /// Parses `--allow-origin` values; an entry that is not an http(s) origin is an error.
    pub fn new(urls: &[String]) -> Result<Origins, String> {
        let mut allowed = Vec::new();
        for u in urls {
            allowed.push(normalize(u).ok_or_else(|| {
                format!("--allow-origin {u:?} is not a web origin like https://app.example.org")
            })?);
        }
        Ok(Origins {
            allowed,
            refused: Arc::default(),
        })
    }

    /// How many writes were refused as cross-site.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether `origin` (an `Origin` header) was allowed by the operator.
    pub fn allows(&self, origin: &str) -> bool {
        normalize(origin).is_some_and(|o| self.allowed.contains(&o))
    }

    /// Why a write with these headers is refused, if it is.
    pub fn refuse_write(&self, headers: &HeaderMap) -> Option<String> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let origin = get("origin");
        if origin.is_some_and(|o| self.allows(o)) {
            return None;
        }
        let cross = match get("sec-fetch-site") {
            Some("same-origin" | "none") => false,
            Some(_) => true,
            None => match (origin, get("host")) {
                (Some(o), Some(host)) => !same_host(o, host),
                (Some(_), None) => true,
                (None, _) => false,
            },
        };
        cross.then(|| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            format!(
                "cross-site write refused: {} may not publish or add peers through this node (its operator can allow a web app with --allow-origin URL)",
                origin.unwrap_or("another site")
            )
        })
    }
}

/// Why a request may not act on this node's demo (see `http::demo_api`), if it comes from
/// another site: a browser names the page's site (`Sec-Fetch-Site`, `Origin`), and only the
/// node's own pages may. Web apps let in with `--allow-origin` may write messages, not this.
/// A tool on this machine sends neither header, and the door has checked its `Host`.
pub fn refuse_cross_origin(headers: &HeaderMap) -> Option<String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let cross = match (get("sec-fetch-site"), get("origin")) {
        (Some("same-origin" | "none"), _) => false,
        (Some(_), _) => true,
        (None, Some(origin)) => get("host").is_none_or(|host| !same_host(origin, host)),
        (None, None) => false,
    };
    cross.then(|| {
        format!(
            "{} may not control this demo: only its own pages may",
            get("origin").unwrap_or("another site")
        )
    })
}

/// `scheme://host[:port]` in lower case, the default port left out; `None` if not http(s).
fn normalize(origin: &str) -> Option<String> {
    let url = url::Url::parse(origin.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?;
    Some(match url.port() {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

/// Whether `origin` names the host and port of `host` (a `Host` header).
pub(crate) fn same_host(origin: &str, host: &str) -> bool {
    let Ok(url) = url::Url::parse(origin) else {
        return false; // "null" and the like
    };
    let (Some(name), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let (h, p) = match host.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => (h.to_owned(), p.parse().ok()),
        _ => (host.clone(), None),
    };
    let p = p.unwrap_or(if url.scheme() == "https" { 443 } else { 80 });
    h == name && p == port
}

/// The Content-Security-Policy for everything this node serves.
pub fn content_security_policy() -> &'static HeaderValue {
    static CSP: OnceLock<HeaderValue> = OnceLock::new();
    CSP.get_or_init(|| {
        let (scripts, styles) = crate::page::index()
            .map(|page| inline_hashes(&String::from_utf8_lossy(page.body())))
            .unwrap_or_default();
        let policy = format!(
            "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'{scripts}; \
             style-src 'self'{styles}; img-src 'self' data:; connect-src 'self' ws: wss:; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        );
        HeaderValue::from_str(&policy).expect("hashes are base64")
    })
}

/// ` 'sha256-…'` for each inline `<script>` and `<style>` of `html`.
fn inline_hashes(html: &str) -> (String, String) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hashes = |tag: &str| {
        let mut out = String::new();
        let mut rest = html;
        let open = format!("<{tag}");
        let close = format!("</{tag}>");
        while let Some(start) = rest.find(&open) {
            let after = &rest[start..];
            let Some(head_end) = after.find('>') else {
                break;
            };
            let head = &after[..head_end];
            let body_start = head_end + 1;
            let Some(body_len) = after[body_start..].find(&close) else {
                break;
            };
            if !head.contains("src=") {
                let body = &after[body_start..body_start + body_len];
                let digest = sha2::Sha256::digest(body.as_bytes());
                out.push_str(&format!(
                    " 'sha256-{}'",
                    base64::engine::general_purpose::STANDARD.encode(digest)
                ));
            }
            rest = &after[body_start + body_len..];
        }
        out
    };
    (hashes("script"), hashes("style"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_cross_site_writes_are_refused() {
        let none = Origins::default();
        for (pairs, refused) in [
            (vec![], false),
            (vec![("host", "127.0.0.1:3000")], false),
            (vec![("sec-fetch-site", "none")], false),
            (
                vec![
                    ("sec-fetch-site", "same-origin"),
                    ("origin", "http://127.0.0.1:3000"),
                ],
                false,
            ),
            (vec![("sec-fetch-site", "cross-site")], true),
            (
                vec![
                    ("sec-fetch-site", "same-site"),
                    ("origin", "http://127.0.0.1:8080"),
                ],
                true,
            ),
            (
                vec![
                    ("origin", "http://127.0.0.1:3000"),
                    ("host", "127.0.0.1:3000"),
                ],
                false,
            ),
            (
                vec![
                    ("origin", "http://evil.example"),
                    ("host", "127.0.0.1:3000"),
                ],
                true,
            ),
            (vec![("origin", "null"), ("host", "127.0.0.1:3000")], true),
            (
                vec![
                    ("origin", "https://n.example.org"),
                    ("host", "n.example.org"),
                ],
                false,
            ),
            (
                vec![("origin", "http://[::1]:3000"), ("host", "[::1]:3000")],
                false,
            ),
        ] {
            assert_eq!(
                none.refuse_write(&headers(&pairs)).is_some(),
                refused,
                "{pairs:?}"
            );
        }
        let some = Origins::new(&["https://App.Example.org/".into()]).unwrap();
        let h = headers(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://app.example.org"),
        ]);
        assert!(some.refuse_write(&h).is_none());
        assert!(Origins::new(&["app.example.org".into()]).is_err());
    }

    #[test]
    fn inline_scripts_and_styles_are_hashed_and_linked_ones_are_not() {
        let html =
            r#"<script src="/a.js"></script><style>p{}</style><script type="module">x()</script>"#;
        let (scripts, styles) = inline_hashes(html);
        assert_eq!(scripts.matches("'sha256-").count(), 1, "{scripts}");
        assert_eq!(styles.matches("'sha256-").count(), 1, "{styles}");
    }
}
