//! Prints the browser peer's load figures, on loopback, in a real headless Chromium
//! (`scripts/web-report` runs it; it judges nothing).
//!
//! - A node holding 100 messages: navigation to the first rendered message list, as the page
//!   marks it (`performance.mark("hearsay:messages-rendered")`), cold (a fresh browser each
//!   time) and warm (assets cached), min / median / max of several loads.
//! - A node holding 20,000 messages of 1 KB (a network that has run for months): navigation
//!   to the send box taking text (`hearsay:composer-ready`) and to the first rendered list,
//!   then the DOM's element count, the JS heap and the engine's WebAssembly memory 10 s after
//!   navigation.

#[path = "../tests/common/mod.rs"]
mod common;

use common::browser::{Chromedriver, first_render_ms};
use common::{fill_store_with, post_message, start_node, start_node_with};
use fantoccini::Client;
use std::time::Duration;

const LOADS: usize = 9;

/// Milliseconds from navigation to a mark the page set.
async fn mark_ms(page: &Client, name: &str) -> f64 {
    let script = format!(
        "const m = performance.getEntriesByName('{name}'); return m.length ? m[0].startTime : null;"
    );
    common::wait_for(&format!("the page to mark {name}"), || async {
        page.execute(&script, vec![])
            .await
            .ok()
            .and_then(|v| v.as_f64())
    })
    .await
}

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

    // A long history: 20,000 messages of 1 KB.
    let dir = tempfile::tempdir().unwrap();
    fill_store_with(dir.path(), 0, 20_000, |i| {
        let head = format!("message {i} ");
        head.clone() + &"x".repeat(1_000 - head.len())
    })
    .await;
    let node = start_node_with(hearsay::server::NodeConfig {
        data: Some(dir.path().to_owned()),
        ..Default::default()
    })
    .await;
    let page = driver.open(1000, 800).await;
    page.goto(&node.http_url()).await.unwrap();
    let ready = mark_ms(&page, "hearsay:composer-ready").await;
    let listed = first_render_ms(&page).await;
    // Ten seconds after navigation (the page's clock, so the time to get here counts).
    let now = page
        .execute("return performance.now()", vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    tokio::time::sleep(Duration::from_millis((10_000.0 - now).max(0.0) as u64)).await;
    let figures = page
        .execute(
            "return [document.getElementsByTagName('*').length, \
                     performance.memory.usedJSHeapSize, \
                     +document.getElementById('messages').dataset.count, \
                     window.hearsayMemory.buffer.byteLength]",
            vec![],
        )
        .await
        .unwrap();
    println!(
        "20,000 messages of 1 KB on the node, cold cache: navigation to the send box taking text \
         {ready:.0} ms (budget 1,500 ms), to the first rendered list {listed:.0} ms; after 10 s: \
         {} DOM elements (budget 5,000), JS heap {:.1} MB (budget 40 MB) and the engine's \
         WebAssembly memory {:.1} MB, {} messages held",
        figures[0],
        figures[1].as_f64().unwrap() / 1e6,
        figures[3].as_f64().unwrap() / 1e6,
        figures[2]
    );
    page.close().await.unwrap();
    node.stop().await;
}
