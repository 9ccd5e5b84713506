//! Takes the README's picture: `hearsay demo` (8 nodes, random links) with a page open on the
//! first node, just after a message sent from the page crossed the network.
//! `cargo run --release -p hearsay --example demo_screenshot` writes docs/map-demo.png.

#[path = "../tests/common/mod.rs"]
mod common;

use common::browser::{Chromedriver, count, screenshot, send_from_page};
use common::wait_for;
use hearsay::cli::DemoArgs;
use hearsay::demo::Demo;

/// Like `wait_for`, for a minute: records of the tree are renewed at a slow pace.
async fn wait_for_long<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let start = std::time::Instant::now();
    while check().await.is_none() {
        assert!(
            start.elapsed().as_secs() < 60,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::main]
async fn main() {
    assert!(
        hearsay::page::embedded(),
        "build the page first: bash scripts/build-web"
    );
    let args = DemoArgs {
        nodes: 8,
        topology: hearsay_proto::sim::Topology::Random,
        port: 0,
    };
    let demo = Demo::start(&args).await.unwrap();
    let mut driver = Chromedriver::start().await;
    let page = driver.open(1100, 760).await;
    page.goto(&demo.nodes[0].http_url()).await.unwrap();
    wait_for("all eight nodes on the map", || async {
        (count(&page, "#map circle.mark.node").await == 8
            && count(&page, "#map circle.mark.me").await == 1)
            .then_some(())
    })
    .await;
    // And the broadcast tree: seven links between the nodes and the page's own.
    wait_for_long("the tree on the map", || async {
        (count(&page, "#map line.link.tree").await >= 8).then_some(())
    })
    .await;
    send_from_page(&page, "hello, mesh!").await;
    wait_for("every node lit", || async {
        (count(&page, "#map circle.mark.node.lit").await == 8).then_some(())
    })
    .await;
    // Let the last marks finish lighting up.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let shot = screenshot(&page, "map-demo").await;
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/map-demo.png");
    std::fs::copy(&shot, &docs).unwrap();
    println!("wrote {}", docs.display());
    page.close().await.unwrap();
    demo.stop().await;
}
