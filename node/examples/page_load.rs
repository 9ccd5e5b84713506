//! Prints how long the browser peer's page takes from navigation to its first rendered
//! message list, on loopback, in a real headless Chromium (`scripts/web-report` runs it).
//!
//! A node holding 100 messages serves the embedded page; the page is loaded several times and
//! the time the page itself marks (`performance.mark("hearsay:messages-rendered")`, relative to
//! navigation start) is reported as min / median / max.

#[path = "../tests/common/mod.rs"]
mod common;

use common::browser::{Chromedriver, first_render_ms};
use common::{post_message, start_node};

const LOADS: usize = 9;

#[tokio::main]
async fn main() {
    assert!(
        hearsay::page::embedded(),
        "build the page first: bash scripts/build-web"
    );
    let node = start_node(&[]).await;
    for i in 0..100 {
        post_message(&node, &format!("message {i}")).await;
    }
    let mut driver = Chromedriver::start().await;
    // Cold: a fresh browser (empty cache) for every load.
    let mut cold = Vec::new();
    for _ in 0..LOADS {
        let page = driver.open(1000, 800).await;
        page.goto(&node.http_url()).await.unwrap();
        cold.push(first_render_ms(&page).await);
        page.close().await.unwrap();
    }
    // Warm: the same browser loading the page again (assets cached as immutable).
    let page = driver.open(1000, 800).await;
    page.goto(&node.http_url()).await.unwrap();
    first_render_ms(&page).await;
    let mut warm = Vec::new();
    for _ in 0..LOADS {
        page.goto("about:blank").await.unwrap();
        page.goto(&node.http_url()).await.unwrap();
        warm.push(first_render_ms(&page).await);
    }
    for (name, mut times) in [("cold cache", cold), ("warm cache", warm)] {
        times.sort_by(f64::total_cmp);
        println!(
            "navigation to first rendered message list, {name} (100 messages, loopback, {LOADS} loads): \
             min {:.0} ms, median {:.0} ms, max {:.0} ms (budget 300 ms)",
            times[0],
            times[LOADS / 2],
            times[LOADS - 1]
        );
    }
    page.close().await.unwrap();
    node.stop().await;
}
