//! The browser peer's page, embedded at compile time from `dist/` (`scripts/build-web`), so one
//! binary serves everything. If the page was not built when the node was compiled, the node
//! still builds and runs, and `/` says how to build it.

use bytes::Bytes;
use rust_embed::RustEmbed;
use std::borrow::Cow;
use warp::http::{Response, StatusCode, header};

#[derive(RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/../dist"]
#[allow_missing = true]
struct Dist;

/// Whether this binary carries the page.
pub fn embedded() -> bool {
    Dist::get("index.html").is_some()
}

/// The page's `index.html`: never cached, so a new build is picked up on reload.
pub fn index() -> Option<Response<Bytes>> {
    let file = Dist::get("index.html")?;
    Some(reply(file.data, "text/html; charset=utf-8", "no-cache"))
}

/// A built asset (`.js`, `.wasm`, …). The build puts a content hash in their names, so they can
/// be cached for good.
pub fn asset(path: &str) -> Option<Response<Bytes>> {
    if path == "index.html" {
        return index();
    }
    let file = Dist::get(path)?;
    let mime = file.metadata.mimetype().to_owned();
    Some(reply(
        file.data,
        &mime,
        "public, max-age=31536000, immutable",
    ))
}

fn reply(body: Cow<'static, [u8]>, content_type: &str, cache: &str) -> Response<Bytes> {
    // Embedded files are static: serve them without copying.
    let body = match body {
        Cow::Borrowed(b) => Bytes::from_static(b),
        Cow::Owned(v) => Bytes::from(v),
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, cache)
        .header("x-content-type-options", "nosniff")
        .body(body)
        .expect("static headers are valid")
}
