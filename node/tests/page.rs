//! The node serves the embedded page at `/` with the right content types and caching.

mod common;

use common::*;

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_types_and_caching() {
    assert!(
        hearsay::page::embedded(),
        "run `bash scripts/build-web` first (scripts/test does)"
    );
    let n = start_node(&[]).await;
    let r = client().get(n.http_url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let html = r.text().await.unwrap();
    // The build's hashed asset names, referenced from index.html.
    let wasm = html
        .split('"')
        .find(|s| s.ends_with("_bg.wasm"))
        .expect("index.html names the .wasm");
    let js = html
        .split('"')
        .find(|s| s.ends_with(".js") && s.contains("hearsay-web"))
        .expect("and the .js");
    for (path, ty) in [(wasm, "application/wasm"), (js, "text/javascript")] {
        let r = client()
            .get(format!("{}{}", n.http_url(), path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], ty, "{path}");
        assert!(
            r.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert!(!r.bytes().await.unwrap().is_empty());
    }
    // The seed's paths still redirect to the page.
    commit(&n, "hi").await;
    // The plain status page stays available.
    let (status, _) = get(&format!("{}/status", n.http_url())).await;
    assert_eq!(status, 200);
    n.stop().await;
}
