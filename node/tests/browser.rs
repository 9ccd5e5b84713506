//! The browser peer end to end: real nodes on 127.0.0.1 serving the embedded page, two real
//! Chromium pages joining the network as full peers.

mod common;

use common::browser::*;
use common::*;
use fantoccini::{Client, Locator};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_on_different_nodes_talk_and_survive_their_node() {
    assert!(
        hearsay::page::embedded(),
        "the node was built without its page: run `bash scripts/build-web` first (scripts/test does)"
    );
    let a = start_node(&[]).await;
    let b = start_node(&[a.ws_url()]).await;
    let c = start_node(&[b.ws_url()]).await;
    let urls = [a.http_url(), b.http_url(), c.http_url()];
    for url in &urls {
        wait_for("a mesh of three", || async {
            (neighbor_ids(url).await.len() == 2).then_some(())
        })
        .await;
    }

    let mut driver = Chromedriver::start().await;
    let page1 = driver.open(1100, 800).await;
    let page2 = driver.open(400, 820).await; // phone width
    page1.goto(&a.http_url()).await.unwrap();
    page2.goto(&b.http_url()).await.unwrap();
    // Each page links to its own node and two more: all three here.
    for page in [&page1, &page2] {
        wait_for("three open links in a page", || async {
            (open_links(page).await == 3).then_some(())
        })
        .await;
    }
    // Nodes list the pages as browser peers.
    let peers = get_json(&format!("{}/api/peers", c.http_url())).await;
    let browsers = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "browser")
        .count();
    assert_eq!(browsers, 2, "{peers}");

    // What one page sends appears in the other and on every node, once.
    let hello = "hello from page 1 <b>not bold</b>";
    send_from_page(&page1, hello).await;
    wait_page_shows(&page2, hello).await;
    wait_page_shows(&page1, hello).await;
    // Outside a demo nobody records a journey: the sender's map lights the one its records
    // predict from the sender, and says that it is a prediction.
    let note = wait_for("the predicted journey on the map", || async {
        let note = text_of(&page1, "journey-note").await?;
        (lit(&page1).await.0 >= 2).then_some(note)
    })
    .await;
    assert!(
        note.contains("predicted from the map, not observed"),
        "{note}"
    );
    assert!(text_of(&page1, "journey-counter").await.is_none());
    wait_for("page 1 to see its message stored", || async {
        page1
            .find(Locator::Css("li.message.mine .stored"))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let mut texts = vec![hello.to_owned()];
    wait_all_hold(&urls, &texts).await;
    // Rendered as text, not HTML.
    assert!(
        page2
            .find_all(Locator::Css("li.message b"))
            .await
            .unwrap()
            .is_empty()
    );

    // A /commit on the third node appears in both pages.
    commit(&c, "committed on node c").await;
    texts.push("committed on node c".to_owned());
    wait_page_shows(&page1, "committed on node c").await;
    wait_page_shows(&page2, "committed on node c").await;
    screenshot(&page1, "two-pages-page1").await;
    screenshot(&page2, "two-pages-page2-phone").await;

    // The node that served page 1 dies; page 1 carries on through its other links.
    a.stop().await;
    wait_for("page 1 to notice its node is gone", || async {
        (open_links(&page1).await == 2).then_some(())
    })
    .await;
    send_from_page(&page1, "still here after node a died").await;
    wait_page_shows(&page2, "still here after node a died").await;
    texts.push("still here after node a died".to_owned());
    commit(&c, "to everyone after a died").await;
    texts.push("to everyone after a died".to_owned());
    wait_page_shows(&page1, "to everyone after a died").await;
    wait_all_hold(&[b.http_url(), c.http_url()], &texts).await;
    let home = page1
        .find(Locator::Css("li.link.retrying"))
        .await
        .expect("the lost home link shows as retrying");
    assert!(home.text().await.unwrap().to_lowercase().contains("home"));
    screenshot(&page1, "page1-after-its-node-died").await;

    page1.close().await.unwrap();
    page2.close().await.unwrap();
    b.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_opened_late_shows_the_history() {
    assert!(
        hearsay::page::embedded(),
        "run `bash scripts/build-web` first"
    );
    let a = start_node(&[]).await;
    for i in 0..5 {
        post_message(&a, &format!("early {i}")).await;
    }
    let mut driver = Chromedriver::start().await;
    let page = driver.open(900, 700).await;
    page.goto(&a.http_url()).await.unwrap();
    for i in 0..5 {
        wait_page_shows(&page, &format!("early {i}")).await;
    }
    // Newest first.
    assert_eq!(
        page_messages(&page).await.first().map(String::as_str),
        Some("early 4")
    );
    let ms = first_render_ms(&page).await;
    println!("navigation to first rendered message list: {ms:.0} ms");
    // The page works under its Content-Security-Policy: nothing refused (the style is
    // inline, hashed in the policy: were it refused, the page would fall back to no style).
    let violations: Vec<String> = console(&page)
        .await
        .into_iter()
        .filter(|m| m.contains("Content Security Policy"))
        .collect();
    assert!(violations.is_empty(), "{violations:?}");
    let background = page
        .execute(
            "return getComputedStyle(document.body).backgroundColor",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(background, "rgb(246, 247, 249)", "the page's style applies");
    // It says what it costs its reader: bytes received over its links, counted as they come.
    wait_for("the page to say what it received", || async {
        let (received, _, _) = traffic(&page).await?;
        let line = text_of(&page, "traffic").await?;
        (received > 0 && line.starts_with("Received")).then_some(())
    })
    .await;
    screenshot(&page, "page-traffic").await;
    page.close().await.unwrap();
    a.stop().await;
}

/// What a page says it has received and sent over its links, and as of when (ms since the
/// epoch): the `#traffic` line's data.
async fn traffic(page: &Client) -> Option<(u64, u64, u64)> {
    let v = page
        .execute(
            "const t = document.getElementById('traffic'); \
             return t && [t.dataset.received, t.dataset.sent, t.dataset.at];",
            vec![],
        )
        .await
        .ok()?;
    let n = |i: usize| v.get(i)?.as_str()?.parse::<u64>().ok();
    Some((n(0)?, n(1)?, n(2)?))
}

/// What an idle page is sent, as the page itself counts it, on a `hearsay demo` of
/// `HEARSAY_DEMO_NODES` nodes (32 unless set): four pages on nodes spread over the demo,
/// `HEARSAY_IDLE_WARM` seconds after every map is full (60 unless set), over
/// `HEARSAY_IDLE_WINDOW` seconds (300 unless set). A benchmark, not in the default run:
/// `cargo test --release -p hearsay --test browser -- --ignored bench_an_idle_page --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: minutes of an idle demo"]
async fn bench_an_idle_page_on_a_demo() {
    assert!(
        hearsay::page::embedded(),
        "run `bash scripts/build-web` first"
    );
    let setting = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let nodes = setting("HEARSAY_DEMO_NODES", 32);
    let warm = setting("HEARSAY_IDLE_WARM", 60) as u64;
    let window = setting("HEARSAY_IDLE_WINDOW", 300) as u64;
    hearsay::demo::raise_file_limit(nodes as u16).unwrap();
    let args = hearsay::cli::DemoArgs {
        nodes: nodes as u16,
        topology: hearsay_proto::sim::Topology::Random,
        port: 0,
    };
    let demo = hearsay::demo::Demo::start(&args).await.unwrap();
    let urls: Vec<String> = demo.nodes.iter().map(|n| n.http_url()).collect();
    wait_maps_full(&urls, nodes, Duration::from_secs(120)).await;
    let mut driver = Chromedriver::start().await;
    let mut pages = Vec::new();
    for k in 0..4 {
        let page = driver.open(1100, 850).await;
        page.goto(&urls[k * nodes / 4]).await.unwrap();
        pages.push(page);
    }
    for page in &pages {
        wait_for_within("the page to count", Duration::from_secs(60), || async {
            traffic(page).await.filter(|t| t.0 > 0).map(|_| ())
        })
        .await;
    }
    // A wait on the wall clock is what a window of idle time is.
    tokio::time::sleep(Duration::from_secs(warm)).await;
    let mut before = Vec::new();
    for page in &pages {
        before.push(traffic(page).await.expect("the page counts"));
    }
    tokio::time::sleep(Duration::from_secs(window)).await;
    let mut rates = Vec::new();
    for (page, b) in pages.iter().zip(&before) {
        let a = traffic(page).await.expect("the page counts");
        let seconds = a.2.saturating_sub(b.2) as f64 / 1_000.0;
        rates.push(((a.0 - b.0) as f64 / seconds, (a.1 - b.1) as f64 / seconds));
    }
    for (k, (received, sent)) in rates.iter().enumerate() {
        eprintln!(
            "page {k} on a {nodes}-node demo, idle {window} s after {warm} s: received \
             {received:.0} B/s, sent {sent:.0} B/s"
        );
    }
    for page in pages {
        page.close().await.unwrap();
    }
    demo.stop().await;
}

/// A page on a node with a long history stays light: it holds only the newest 2,000
/// messages (`PAGE_KEEP`) and renders only the rows near the viewport; scrolling to the end
/// pages back through the node's history; new messages arrive above a reader without moving
/// what they read, counted on a button that takes them back to the top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_a_long_history_stays_light_and_scrolls_back() {
    assert!(
        hearsay::page::embedded(),
        "run `bash scripts/build-web` first"
    );
    let dir = tempfile::tempdir().unwrap();
    fill_store(dir.path(), 0, 20_000).await;
    let a = start_node_with(hearsay::server::NodeConfig {
        data: Some(dir.path().to_owned()),
        ..Default::default()
    })
    .await;
    let mut driver = Chromedriver::start().await;
    let page = driver.open(900, 700).await;
    page.goto(&a.http_url()).await.unwrap();
    let js = |script: &'static str| {
        let page = page.clone();
        async move { page.execute(script, vec![]).await.unwrap() }
    };
    let held = || async { js("return +document.getElementById('messages').dataset.count").await };
    let within = std::time::Duration::from_secs(60);
    wait_for_within(
        "the page to hold the newest 2,000 messages",
        within,
        || async {
            let first = page_messages(&page).await.into_iter().next();
            (held().await == 2_000 && first.as_deref() == Some("old message 19999")).then_some(())
        },
    )
    .await;
    let compose = page.find(Locator::Id("compose")).await.unwrap();
    assert!(
        compose.is_displayed().await.unwrap(),
        "the send box is visible"
    );
    // Only the rows near the viewport are in the DOM.
    let rows = count(&page, "li.message").await;
    let elements = js("return document.getElementsByTagName('*').length").await;
    let heap = js("return performance.memory.usedJSHeapSize").await;
    println!(
        "20,000 messages on the node: {rows} rows rendered, {elements} elements, JS heap {:.1} MB",
        heap.as_f64().unwrap() / 1e6
    );
    assert!((1..=200).contains(&rows), "{rows} rows rendered");
    assert!(elements.as_u64().unwrap() <= 5_000, "{elements} elements");

    // A reader scrolls into the list; three messages arrive.
    js("const l = document.getElementById('messages'); \
        window.scrollTo(0, l.getBoundingClientRect().top + window.scrollY + 3000)")
    .await;
    let anchor = || async {
        // The first row on screen, and where it is (none while the window re-renders after
        // a scroll: found under load in a full test run).
        let v = js("const r = [...document.querySelectorAll('li.message')] \
                      .find(li => li.getBoundingClientRect().bottom > 0); \
                    return r ? [r.dataset.id, r.getBoundingClientRect().top] : null")
        .await;
        Some((v.get(0)?.as_str()?.to_owned(), v.get(1)?.as_f64()?))
    };
    let (seen, top) = wait_for("the window to follow the scroll", || async {
        let (id, top) = anchor().await?;
        let text = page_messages(&page).await;
        // Rows of the window's first pass are gone: the window moved down the list.
        (!text.iter().any(|t| t == "old message 19999")).then_some((id, top))
    })
    .await;
    for i in 0..3 {
        post_message(&a, &format!("new {i}")).await;
    }
    let fresh = wait_for("the count of new messages", || async {
        let b = page.find(Locator::Css("button.fresh")).await.ok()?;
        let text = b.text().await.ok()?;
        text.contains('3').then_some(b)
    })
    .await;
    assert_eq!(fresh.text().await.unwrap(), "↑ 3 new messages");
    screenshot(&page, "long-history-scrolled").await;
    // Nothing older was fetched while the reader was mid-list (the engine may already have
    // let its three oldest go).
    let n = held().await.as_u64().unwrap();
    assert!((2_000..=2_003).contains(&n), "{n} messages held");
    let (still, now) = wait_for("a row on screen", anchor).await;
    assert_eq!(
        still, seen,
        "the row the reader was reading is still first on screen"
    );
    // (A jump would be a row, about 70 px; a pixel or two is rounding.)
    assert!((now - top).abs() <= 2.0, "it moved from {top} to {now} px");
    // Reading on down does not lose the count.
    js("window.scrollBy(0, 200)").await;
    wait_for("the window to follow", || async {
        (anchor().await?.0 != seen).then_some(())
    })
    .await;
    assert_eq!(
        page.find(Locator::Css("button.fresh"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "↑ 3 new messages"
    );

    // At the end of the list, one page of older messages is fetched from the node.
    js("window.scrollTo(0, document.body.scrollHeight)").await;
    // (Within a minute: with the other browser tests beside it on two cores, the page has
    // taken over 20 s to lay the end out and ask.)
    wait_for_within(
        "one page of older messages to load at the end",
        within,
        || async {
            let n = held().await.as_u64()?;
            (2_200..=2_203).contains(&n).then_some(())
        },
    )
    .await;
    // The reader keeps scrolling to the end, as a person would while rows are measured and
    // the end moves (one scroll raced the layout under load in CI). Keeping on may page back
    // once more, so any row at or past the first page's oldest will do.
    wait_for_within("the oldest fetched to show at the end", within, || async {
        js("window.scrollTo(0, document.body.scrollHeight)").await;
        let texts = page_messages(&page).await;
        texts
            .iter()
            .filter_map(|t| t.strip_prefix("old message ")?.parse::<u32>().ok())
            .any(|k| k <= 17_800)
            .then_some(())
    })
    .await;
    let elements = js("return document.getElementsByTagName('*').length").await;
    assert!(elements.as_u64().unwrap() <= 5_000, "{elements} elements");

    // The button takes the reader to the newest; what was fetched for scrolling back goes.
    fresh.click().await.unwrap();
    wait_for_within("the page to show the newest again", within, || async {
        let first = page_messages(&page).await.into_iter().next();
        (first.as_deref() == Some("new 2") && held().await == 2_000).then_some(())
    })
    .await;
    assert_eq!(count(&page, "button.fresh").await, 0);
    // The window's spacers and the map's lit journey are styled through the style object:
    // nothing the Content-Security-Policy refuses.
    let refused: Vec<String> = console(&page)
        .await
        .into_iter()
        .filter(|m| m.contains("Content Security Policy"))
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    page.close().await.unwrap();
    a.stop().await;
}

/// A node whose `HELLO` reaches the page 3 s late (a slow link, or a busy page thread) is
/// still a hearsay node to the page: silence never makes a peer a seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_answers_late_is_still_a_node() {
    assert!(
        hearsay::page::embedded(),
        "run `bash scripts/build-web` first"
    );
    let a = start_node(&[]).await;
    let slow = common::proxy::SlowProxy::start(a.addr, std::time::Duration::from_secs(3)).await;
    let mut driver = Chromedriver::start().await;
    let page = driver.open(900, 700).await;
    page.goto(&slow.http_url()).await.unwrap();
    wait_for("the page to link to its home", || async {
        (open_links(&page).await == 1).then_some(())
    })
    .await;
    // For three seconds it has heard nothing back.
    wait_for("the page to hear the node's HELLO", || async {
        (count(&page, "li.peer.node").await == 1).then_some(())
    })
    .await;
    assert_eq!(
        count(&page, "li.peer.v1").await,
        0,
        "never taken for a seed"
    );
    let mark = format!("#map circle.mark.node[data-id=\"{}\"]", a.id);
    wait_for("the map to show it as a node", || async {
        (count(&page, &mark).await == 1).then_some(())
    })
    .await;
    // And it works: the page's message reaches the node.
    send_from_page(&page, "through a slow hello").await;
    wait_all_hold(&[a.http_url()], &["through a slow hello".to_owned()]).await;
    page.close().await.unwrap();
    a.stop().await;
}

/// A page served over https (a node with a certificate from a CA made here, which this
/// browser trusts for the run) joins as a full peer over wss://, and links only to nodes that
/// serve wss://: a plain ws:// node would be mixed content, which the browser refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_served_over_https_joins_over_wss_only() {
    assert!(
        hearsay::page::embedded(),
        "run `bash scripts/build-web` first"
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path());
    let tls = || hearsay::server::NodeConfig {
        tls_cert: Some(ca.cert.clone()),
        tls_key: Some(ca.key.clone()),
        tls_ca: vec![ca.ca.clone()],
        ..Default::default()
    };
    let a = start_node_with(tls()).await;
    let a_wss = format!("wss://127.0.0.1:{}", a.addr.port());
    let b = start_node_with(hearsay::server::NodeConfig {
        peers: vec![a_wss.clone()],
        ..tls()
    })
    .await;
    let plain = start_node_with(hearsay::server::NodeConfig {
        peers: vec![a_wss.clone()],
        tls_ca: vec![ca.ca.clone()],
        ..Default::default()
    })
    .await;
    // (b speaks only https: the page's two links show it linked.)
    wait_for("the plain node linked to a", || async {
        neighbor_ids(&plain.http_url())
            .await
            .contains(&a.id.to_string())
            .then_some(())
    })
    .await;

    let mut driver = Chromedriver::start().await;
    let trust = format!("--ignore-certificate-errors-spki-list={}", ca.spki_sha256);
    let page = driver.open_with(900, 700, &[trust]).await;
    page.goto(&format!("https://127.0.0.1:{}", a.addr.port()))
        .await
        .unwrap();
    wait_for("the page linked to its home and b over wss", || async {
        (open_links(&page).await == 2).then_some(())
    })
    .await;
    let addresses = page
        .execute(
            "return [...document.querySelectorAll('li.link')].map(l => l.dataset.address)",
            vec![],
        )
        .await
        .unwrap();
    let addresses: Vec<String> = serde_json::from_value(addresses).unwrap();
    assert!(
        addresses.iter().all(|a| a.starts_with("wss://")),
        "{addresses:?}"
    );
    // A full peer: what it sends reaches the network, the plain node included.
    send_from_page(&page, "over https").await;
    wait_all_hold(&[plain.http_url()], &["over https".to_owned()]).await;
    page.close().await.unwrap();
    for n in [a, b, plain] {
        n.stop().await;
    }
}

/// Another site's page (served from `localhost`, another site than `127.0.0.1`) tries what
/// needs no permission: a text/plain `fetch` POST and an image pointing at `/commit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sites_page_cannot_publish_through_a_visitors_node() {
    let node = start_node(&[]).await;
    let url = node.http_url();
    let evil = format!(
        r#"<!doctype html><title>evil</title>
<img src="{url}/commit?msg=evil%20img">
<script>
fetch("{url}/api/messages", {{ method: "POST", mode: "no-cors",
  headers: {{ "content-type": "text/plain" }}, body: '{{"data":"evil fetch"}}' }})
  .finally(() => document.title = "done");
</script>"#
    );
    let site = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site_port = site.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut tcp, _)) = site.accept().await {
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{evil}",
                evil.len()
            );
            let _ = tcp.write_all(reply.as_bytes()).await;
        }
    });
    let mut driver = Chromedriver::start().await;
    let page = driver.open(800, 600).await;
    page.goto(&format!("http://localhost:{site_port}/"))
        .await
        .unwrap();
    wait_for("the node to refuse both writes", || {
        let url = url.clone();
        async move {
            let refused = status(&url).await["cross_site_refused"].as_u64()?;
            (refused >= 2).then_some(())
        }
    })
    .await;
    assert_eq!(page.title().await.unwrap(), "done");
    assert!(
        message_texts(&url).await.is_empty(),
        "nothing was published"
    );
    page.close().await.unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_offline_is_kept_and_delivered_when_a_link_returns() {
    assert!(
        hearsay::page::embedded(),
        "run `bash scripts/build-web` first"
    );
    let data = tempfile::tempdir().unwrap();
    let config = || hearsay::server::NodeConfig {
        data: Some(data.path().to_owned()),
        ..Default::default()
    };
    let a = start_node_with(config()).await;
    let addr = a.addr;
    let mut driver = Chromedriver::start().await;
    let page = driver.open(900, 700).await;
    page.goto(&a.http_url()).await.unwrap();
    wait_for("the page online", || async {
        (open_links(&page).await == 1).then_some(())
    })
    .await;
    send_from_page(&page, "sent online").await;
    wait_all_hold(&[a.http_url()], &["sent online".to_owned()]).await;

    a.stop().await;
    wait_for("the page to see it is offline", || async {
        let banner = page.find(Locator::Css(".banner.error")).await.ok()?;
        banner.text().await.ok()?.contains("Offline").then_some(())
    })
    .await;
    send_from_page(&page, "sent while offline").await;
    wait_page_shows(&page, "sent while offline").await;
    let pending = page.find(Locator::Css("li.message.mine .pending")).await;
    assert!(
        pending.is_ok(),
        "an offline message shows as not yet stored"
    );

    // The node comes back where it was; the page redials and hands the message over.
    let a = start_node_at(addr, config()).await;
    // (It held the first from its store; it must now hold both, each once.)
    wait_for("the node to hold both", || async {
        (message_texts(&a.http_url()).await == ["sent online", "sent while offline"]).then_some(())
    })
    .await;
    wait_for("the offline message marked stored", || async {
        (page
            .find_all(Locator::Css("li.message.mine .stored"))
            .await
            .ok()?
            .len()
            == 2)
            .then_some(())
    })
    .await;

    // The page keeps its messages in the browser's IndexedDB (localStorage is synchronous and
    // small). A new node with an empty store now answers at the same address: after a
    // reload the page still shows both, from the browser, and hands them to the new node.
    wait_for("the page to keep both in IndexedDB", || async {
        let kept = saved_texts(&page).await;
        (kept.len() == 2).then_some(())
    })
    .await;
    let old_copy = page
        .execute("return localStorage.getItem('hearsay:messages')", vec![])
        .await
        .unwrap();
    assert!(
        old_copy.is_null(),
        "nothing kept in localStorage: {old_copy}"
    );
    a.stop().await;
    let empty = tempfile::tempdir().unwrap();
    let fresh = start_node_at(
        addr,
        hearsay::server::NodeConfig {
            data: Some(empty.path().to_owned()),
            ..Default::default()
        },
    )
    .await;
    page.refresh().await.unwrap();
    wait_page_shows(&page, "sent while offline").await;
    wait_page_shows(&page, "sent online").await;
    wait_for("the new node to get both from the page", || async {
        let mut held = message_texts(&fresh.http_url()).await;
        held.sort();
        (held == ["sent online", "sent while offline"]).then_some(())
    })
    .await;
    page.close().await.unwrap();
    fresh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_draws_every_node_and_link_and_shows_details() {
    assert!(
        hearsay::page::embedded(),
        "run `bash scripts/build-web` first"
    );
    // `hearsay demo --nodes 5 --topology line`, as the command runs it: the line is only the
    // first links; membership then links the nodes into a mesh.
    let args = hearsay::cli::DemoArgs {
        nodes: 5,
        topology: hearsay_proto::sim::Topology::Line,
        port: 0,
    };
    let demo = hearsay::demo::Demo::start(&args).await.unwrap();
    let nodes = demo.nodes.clone();
    let mut driver = Chromedriver::start().await;
    let page = driver.open(1100, 850).await;
    page.goto(&nodes[0].http_url()).await.unwrap();
    let urls: Vec<String> = nodes.iter().map(|n| n.http_url()).collect();
    // Nodes announce their links once their tree has a root, seconds after they start, and
    // a changed record at most every 5 s after that: on a loaded machine the map can take
    // longer than the usual deadline to settle (a full CI run, with the 20,000-message page
    // test beside it, once took over 60 s).
    let settle = std::time::Duration::from_secs(120);
    wait_for_within(
        "five node marks and every node-to-node link",
        settle,
        || async {
            // The links as the nodes themselves tell them.
            let mut ends = 0;
            for url in &urls {
                ends += node_neighbors(url).await;
            }
            (count(&page, "#map circle.mark.node").await == 5
                && count(&page, "#map line.link.nn").await == ends / 2)
                .then_some(())
        },
    )
    .await;
    wait_for("the page itself and its links on the map", || async {
        (count(&page, "#map circle.mark.me").await == 1
            && count(&page, "#map line.link.nb").await >= 1)
            .then_some(())
    })
    .await;
    screenshot(&page, "map-line-of-five").await;

    // A message sent from the page lights up the page and every node, and each node the
    // link it came over (five arrivals, five links): as it happened, since this is a demo,
    // which records the journey, and the page says so.
    send_from_page(&page, "watch me travel").await;
    let note = wait_for("every node lit, as it happened", || async {
        let note = text_of(&page, "journey-counter").await?;
        (lit(&page).await == (6, 5) && note.contains("recorded by the demo")).then_some(note)
    })
    .await;
    assert!(note.contains("reached 5 of 5"), "{note}");
    screenshot(&page, "map-message-travelled").await;

    // Click the far end for its details.
    let far = nodes[4].id.to_string();
    let mark = page
        .find(Locator::Css(&format!("#map circle[data-id='{far}']")))
        .await
        .unwrap();
    mark.click().await.unwrap();
    let details = page
        .wait()
        .for_element(Locator::Id("map-details"))
        .await
        .unwrap();
    assert!(details.text().await.unwrap().contains(&nodes[4].ws_url()));
    // Its neighbours, and the page if the page happened to link to it too (records are
    // renewed within seconds of a change, so wait for the map to catch up; the count is read
    // afresh each time, as a repair may change it meanwhile).
    wait_for(
        "the details to say as many links as the node has",
        || async {
            let links = neighbor_ids(&nodes[4].http_url()).await.len();
            let want = format!("{links} link");
            map_details(&page).await?.contains(&want).then_some(())
        },
    )
    .await;

    // A node that leaves goes off the map, once each of its neighbours has announced its
    // links without it (each at most every 5 s) and the records have reached the page.
    demo.ask(hearsay::demo::Command::Kill {
        share: None,
        node: Some(nodes[4].id.to_string()),
        except: None,
    })
    .await
    .unwrap();
    wait_for_within("four node marks", settle, || async {
        (count(&page, "#map circle.mark.node").await == 4).then_some(())
    })
    .await;
    page.close().await.unwrap();
    demo.stop().await;
}

/// A page opened as a 50-node demo starts shows every node within seconds, and a page opened
/// once the network has formed shows nearly all of them at once, all learned through the
/// protocol (the demo tells the pages nothing; the node that serves a page sends it its
/// map). Before map repair, the nodes' maps of a 50-node demo took 27 s to fill. The times
/// are printed (run with `--nocapture`); the README's table has them. Then the map is used
/// as a person would: a node found by address, zoom and pan by keys, wheel and drag, details
/// on focus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_shows_a_starting_demo_within_seconds_and_its_map_is_searched_and_zoomed() {
    assert!(
        hearsay::page::embedded(),
        "run `bash scripts/build-web` first"
    );
    const NODES: usize = 50;
    let args = hearsay::cli::DemoArgs {
        nodes: NODES as u16,
        topology: hearsay_proto::sim::Topology::Random,
        port: 0,
    };
    let mut driver = Chromedriver::start().await;
    let first = driver.open(1100, 850).await;
    let started = std::time::Instant::now();
    let demo = hearsay::demo::Demo::start(&args).await.unwrap();
    first.goto(&demo.nodes[0].http_url()).await.unwrap();
    let nodes_shown = |page: &Client, want: usize| {
        let page = page.clone();
        async move { (count(&page, "#map circle.mark.node").await >= want).then_some(()) }
    };
    wait_for_within(
        "every node on the first page",
        Duration::from_secs(60),
        || nodes_shown(&first, NODES),
    )
    .await;
    let all_at = started.elapsed();
    // Once every node's map is full, a page opened on any node shows it at once.
    let urls: Vec<String> = demo.nodes.iter().map(|n| n.http_url()).collect();
    wait_maps_full(&urls, NODES, Duration::from_secs(60)).await;
    let formed_at = started.elapsed();
    let late = driver.open(1100, 850).await;
    let opened = std::time::Instant::now();
    late.goto(&demo.nodes[NODES / 2].http_url()).await.unwrap();
    wait_for("98% of the nodes on a page opened late", || {
        nodes_shown(&late, NODES * 98 / 100)
    })
    .await;
    let late_after = opened.elapsed();
    eprintln!(
        "{NODES}-node demo: the first page showed every node {:.1} s after the start; every \
         map was full at {:.1} s; a page opened then showed 98% {:.2} s after it was opened",
        all_at.as_secs_f64(),
        formed_at.as_secs_f64(),
        late_after.as_secs_f64()
    );
    screenshot(&late, "map-fifty-nodes").await;

    // Find a node by its address: it is marked, selected, and zoomed to.
    let wanted = demo.nodes[10].ws_url();
    let address = wanted.trim_start_matches("ws://").to_owned();
    let find = late.find(Locator::Id("map-find")).await.unwrap();
    find.send_keys(&address).await.unwrap();
    wait_for("the node found, marked and its details shown", || async {
        let details = map_details(&late).await?;
        (count(&late, "#map circle.mark.found").await == 1 && details.contains(&wanted))
            .then_some(())
    })
    .await;
    let width = |page: &Client| {
        let page = page.clone();
        async move { view_box(&page).await.1 }
    };
    assert!(width(&late).await < 600.0, "zoomed to the node found");
    screenshot(&late, "map-found").await;
    // Keys on the map: 0 shows it whole, + zooms in, arrows pan.
    let map = late.find(Locator::Id("map")).await.unwrap();
    map.send_keys("0").await.unwrap();
    assert_eq!(width(&late).await, 600.0);
    map.send_keys("+").await.unwrap();
    assert_eq!(width(&late).await, 400.0);
    // The wheel zooms in further where the pointer is; a drag pans.
    let script = |body: &str| {
        format!(
            "const m = document.getElementById('map'); const r = m.getBoundingClientRect(); \
             const x = r.left + r.width / 2, y = r.top + r.height / 2; {body}"
        )
    };
    late.execute(
        &script("m.dispatchEvent(new WheelEvent('wheel', {deltaY: -300, clientX: x, clientY: y, bubbles: true, cancelable: true}));"),
        vec![],
    )
    .await
    .unwrap();
    assert!(width(&late).await < 400.0);
    let viewbox = || async { view_box(&late).await.0 };
    let before = viewbox().await;
    late.execute(
        &script(
            "const p = (t, dx) => m.dispatchEvent(new PointerEvent(t, {pointerId: 7, clientX: x + dx, clientY: y, bubbles: true})); \
             p('pointerdown', 0); p('pointermove', -40); p('pointerup', -40);",
        ),
        vec![],
    )
    .await
    .unwrap();
    assert_ne!(viewbox().await, before, "a drag pans");
    // Focus on a mark shows its details.
    let mark = demo.nodes[20].id.to_string();
    late.execute(
        &format!("document.querySelector(\"#map circle[data-id='{mark}']\").parentElement.focus()"),
        vec![],
    )
    .await
    .unwrap();
    let want = demo.nodes[20].ws_url();
    wait_for("the focused mark's details", || async {
        map_details(&late).await?.contains(&want).then_some(())
    })
    .await;
    let (elements, median) = pan_for_three_seconds(&late, "map-panning").await;
    eprintln!(
        "the map of {NODES} nodes is {elements} elements; a 3 s pan drew a frame every \
         {median:.1} ms (median)"
    );
    assert!(elements < 5_000);
    first.close().await.unwrap();
    late.close().await.unwrap();
    demo.stop().await;
}

/// A 100-node demo from the page, as a person demos it: the map shows the nodes at once
/// (learned through the protocol), stays under its element bound, and replays a sent
/// message's journey as it happened until the counter says every node was reached; then the
/// page's buttons kill a tenth of the nodes and cut the network in two (a message reaches
/// only its half), and heal it: the halves reconcile, and every live node is reached again.
/// At phone width the page keeps its layout. Times are printed (`--nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_node_demo_replays_journeys_and_breaks_and_heals_from_the_page() {
    demo_from_the_page(100, false).await;
}

/// The same at scale, with a 3 s pan's frame interval: a report, not in the default run.
/// `HEARSAY_DEMO_NODES=500 cargo test --release -p hearsay --test browser -- --ignored
/// report_a_demo --nocapture` (the README's table has its figures at 500 and 1,000; the
/// screenshots are in `target/screenshots/demo-N-*.png`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a report: hundreds of nodes"]
async fn report_a_demo_from_the_page_at_scale() {
    let nodes = std::env::var("HEARSAY_DEMO_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    demo_from_the_page(nodes, true).await;
}

async fn demo_from_the_page(nodes: usize, pan: bool) {
    assert!(
        hearsay::page::embedded(),
        "run `bash scripts/build-web` first"
    );
    hearsay::demo::raise_file_limit(nodes as u16).unwrap();
    // Waits grow with the network (a thousand nodes' maps fill in tens of seconds).
    let patience = Duration::from_secs(20 + nodes as u64 / 8);
    let args = hearsay::cli::DemoArgs {
        nodes: nodes as u16,
        topology: hearsay_proto::sim::Topology::Random,
        port: 0,
    };
    let started = std::time::Instant::now();
    let demo = hearsay::demo::Demo::start(&args).await.unwrap();
    let urls: Vec<String> = demo.nodes.iter().map(|n| n.http_url()).collect();
    wait_maps_full(&urls, nodes, Duration::from_secs(120 + nodes as u64 / 4)).await;
    let full_at = started.elapsed();
    let mut driver = Chromedriver::start().await;
    let page = driver.open(1280, 800).await;
    let opened = std::time::Instant::now();
    page.goto(&urls[0]).await.unwrap();
    wait_for_within("every node on the page", patience, || async {
        (count(&page, "#map circle.mark.node").await >= nodes).then_some(())
    })
    .await;
    let shown_after = opened.elapsed();
    let elements = page
        .execute("return document.querySelectorAll('*').length", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    eprintln!(
        "{nodes}-node demo: every map full {:.1} s after the start; a page opened then showed every node {:.2} s after it was opened; {elements} elements",
        full_at.as_secs_f64(),
        shown_after.as_secs_f64()
    );
    assert!(elements <= 5_000, "{elements} elements");
    let status_says = |want: String| {
        let page = page.clone();
        async move {
            text_of(&page, "demo-status")
                .await?
                .contains(&want)
                .then_some(())
        }
    };
    wait_for("the demo's controls", || {
        status_says(format!("{nodes} nodes, {nodes} live"))
    })
    .await;
    let counter = |want: String| {
        let page = page.clone();
        async move {
            let text = text_of(&page, "journey-counter").await?;
            text.contains(&want).then_some(text)
        }
    };

    // A message sent from the page: the replay lights the nodes hop by hop, and the counter
    // ends at every node.
    send_from_page(&page, "watch me go").await;
    wait_for_within("the replay to start", patience, || {
        counter("replaying".to_owned())
    })
    .await;
    screenshot(&page, &format!("demo-{nodes}-replay-desktop")).await;
    let said = wait_for_within("the replay to reach every node", patience, || {
        counter(format!("reached {nodes} of {nodes}"))
    })
    .await;
    eprintln!("the counter says: {said}");
    wait_for("every mark lit", || async {
        (lit(&page).await.0 >= nodes as u64).then_some(())
    })
    .await;
    screenshot(&page, &format!("demo-{nodes}-desktop")).await;
    if pan {
        // Once the replay has ended (the journey is drawn over the map in its own
        // elements, so a map that changes beneath does not start it again).
        let running = || async {
            page.execute(
                "return document.getAnimations().filter(a => a.playState === 'running').length",
                vec![],
            )
            .await
            .ok()?
            .as_u64()
        };
        wait_for_within("the replay's animations to end", patience, || async {
            (running().await? == 0).then_some(())
        })
        .await;
        let (elements, median) =
            pan_for_three_seconds(&page, &format!("demo-{nodes}-panning")).await;
        eprintln!(
            "the map of {nodes} nodes is {elements} elements; a 3 s pan drew a frame every {median:.1} ms (median)"
        );
        page.find(Locator::Id("map"))
            .await
            .unwrap()
            .send_keys("0")
            .await
            .unwrap();
    }

    // Kill a tenth, then cut in two: a message reaches only this page's half.
    let live_count = nodes - nodes.div_ceil(10);
    page.find(Locator::Id("demo-kill"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_within("a tenth stopped", patience, || {
        status_says(format!("{live_count} live"))
    })
    .await;
    page.find(Locator::Id("demo-split"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the cut", || status_says("cut in two".to_owned())).await;
    // (Once each side's links are its own: the node serving the page has none across.)
    let side: std::collections::HashSet<String> = demo.nodes[..nodes / 2]
        .iter()
        .map(|n| n.id.to_string())
        .collect();
    let all: std::collections::HashSet<String> =
        demo.nodes.iter().map(|n| n.id.to_string()).collect();
    wait_for("this side's links its own", || async {
        let n: Vec<String> = neighbor_ids(&urls[0])
            .await
            .into_iter()
            .filter(|p| all.contains(p))
            .collect();
        (!n.is_empty() && n.iter().all(|p| side.contains(p))).then_some(())
    })
    .await;
    send_from_page(&page, "only half of you").await;
    let half = wait_for_within("the replay of a message in the cut", patience, || async {
        let text = counter(format!("of {live_count}")).await?;
        text.contains("recorded by the demo").then_some(text)
    })
    .await;
    eprintln!("in the cut, the counter says: {half}");
    assert!(
        !half.contains(&format!("reached {live_count} of {live_count}")),
        "{half}"
    );
    screenshot(&page, &format!("demo-{nodes}-cut-desktop")).await;

    // Healed: every live node is reached again, and the halves reconcile what they missed.
    let healed_at = std::time::Instant::now();
    page.find(Locator::Id("demo-heal"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("healed", || async {
        status_says(format!("{live_count} live")).await?;
        page.find(Locator::Id("demo-split")).await.ok().map(|_| ())
    })
    .await;
    let live: Vec<String> = {
        let stopped: std::collections::HashSet<String> = get_json(&format!("{}/api/demo", urls[0]))
            .await["stopped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        demo.nodes
            .iter()
            .filter(|n| !stopped.contains(&n.id.to_string()))
            .map(|n| n.http_url())
            .collect()
    };
    assert_eq!(live.len(), live_count);
    for url in &live {
        wait_for_within(
            "the halves reconciled",
            Duration::from_secs(60) + patience,
            || async {
                message_texts(url)
                    .await
                    .contains(&"only half of you".to_owned())
                    .then_some(())
            },
        )
        .await;
    }
    let reconciled_after = healed_at.elapsed();
    send_from_page(&page, "all of you again").await;
    let again = wait_for_within("every live node reached", patience, || async {
        let text = counter(format!("reached {live_count} of {live_count}")).await?;
        text.contains("recorded by the demo").then_some(text)
    })
    .await;
    eprintln!(
        "healed: every live node held what the other half missed {:.1} s after; the next message: {again}",
        reconciled_after.as_secs_f64()
    );
    screenshot(&page, &format!("demo-{nodes}-healed-desktop")).await;

    // At phone width the page keeps its layout: nothing wider than the screen.
    let phone = driver.open(390, 844).await;
    phone.goto(&live[1]).await.unwrap();
    wait_for_within("the phone's map", patience, || async {
        (count(&phone, "#map circle.mark.node").await >= live_count).then_some(())
    })
    .await;
    let wide = phone
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap()
        .as_i64()
        .unwrap();
    assert!(wide <= 0, "the page is {wide} px wider than the phone");
    screenshot(&phone, &format!("demo-{nodes}-phone")).await;
    page.close().await.unwrap();
    phone.close().await.unwrap();
    demo.stop().await;
}

/// Waits until every node's map holds `nodes` records.
async fn wait_maps_full(urls: &[String], nodes: usize, deadline: Duration) {
    wait_for_within("every node's map full", deadline, || async {
        for url in urls {
            if status(url).await["map"]["records"].as_u64()? < nodes as u64 {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// What the map's details line says, if it shows.
async fn map_details(page: &Client) -> Option<String> {
    text_of(page, "map-details").await
}

/// The map's `viewBox` (the part in view), and its width.
async fn view_box(page: &Client) -> (String, f64) {
    let script = "return document.getElementById('map').getAttribute('viewBox')";
    let v = page.execute(script, vec![]).await.unwrap();
    let text = v.as_str().unwrap().to_owned();
    let width = text.split(' ').nth(2).unwrap().parse().unwrap();
    (text, width)
}

/// Pans the map for 3 s, a pointer move every frame, as a person dragging it would: the
/// map's element count and the median interval between frames drawn meanwhile, in ms. A
/// screenshot `{name}` shows the map while the pointer is still down (moved as a picture);
/// once it lets go, the view it was moved to is the viewBox, and the picture is gone.
async fn pan_for_three_seconds(page: &Client, name: &str) -> (u64, f64) {
    let script = "const done = arguments[0];
        const m = document.getElementById('map'); const r = m.getBoundingClientRect();
        const x = r.left + r.width / 2, y = r.top + r.height / 2;
        const p = (t, dx, dy) => m.dispatchEvent(new PointerEvent(t,
            {pointerId: 9, clientX: x + dx, clientY: y + dy, bubbles: true}));
        m.dispatchEvent(new KeyboardEvent('keydown', {key: '+', bubbles: true}));
        p('pointerdown', 0, 0);
        const frames = []; const start = performance.now(); let last = start;
        const step = (now) => {
            frames.push(now - last); last = now;
            const t = (now - start) / 1000;
            p('pointermove', 80 * Math.sin(t * 3), 40 * Math.cos(t * 3));
            if (now - start < 3000) { requestAnimationFrame(step); return; }
            frames.sort((a, b) => a - b);
            done([document.querySelectorAll('#map *').length, frames[frames.length >> 1]]);
        };
        requestAnimationFrame(step);";
    let v = page.execute_async(script, vec![]).await.unwrap();
    let before = view_box(page).await.0;
    screenshot(page, name).await;
    let transform = "return document.getElementById('map').style.transform";
    let moved = page.execute(transform, vec![]).await.unwrap();
    assert!(
        moved.as_str().unwrap().starts_with("translate"),
        "{moved}: a drag moves the map as a picture"
    );
    page.execute(
        "const m = document.getElementById('map');
         m.dispatchEvent(new PointerEvent('pointerup', {pointerId: 9, bubbles: true}));",
        vec![],
    )
    .await
    .unwrap();
    assert_ne!(
        view_box(page).await.0,
        before,
        "the drag's view is set when it ends"
    );
    let moved = page.execute(transform, vec![]).await.unwrap();
    assert_eq!(moved.as_str(), Some(""), "and the picture is gone");
    (v[0].as_u64().unwrap(), v[1].as_f64().unwrap())
}

/// The map of a 500-node demo, panned for 3 s in headless Chromium: its element count and the
/// median frame interval (the issue's bound: 5,000 elements, 33 ms). A benchmark, not in the
/// default run; build it in release, as `hearsay demo` runs its nodes: `cargo test --release
/// -p hearsay --test browser -- --ignored bench_a_map --nocapture`. Since a drag moves the map
/// as a picture: 16.7 ms; the page that set the viewBox at every move, the same day: 50.0 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: 500 nodes"]
async fn bench_a_map_of_five_hundred_nodes_pans_smoothly() {
    const NODES: usize = 500;
    hearsay::demo::raise_file_limit(NODES as u16).unwrap();
    let args = hearsay::cli::DemoArgs {
        nodes: NODES as u16,
        topology: hearsay_proto::sim::Topology::Random,
        port: 0,
    };
    let demo = hearsay::demo::Demo::start(&args).await.unwrap();
    let mut driver = Chromedriver::start().await;
    let page = driver.open(1280, 800).await;
    page.goto(&demo.nodes[0].http_url()).await.unwrap();
    wait_for_within(
        "98% of the nodes on the page",
        Duration::from_secs(120),
        || async {
            (count(&page, "#map circle.mark.node").await >= NODES * 98 / 100).then_some(())
        },
    )
    .await;
    let (elements, median) = pan_for_three_seconds(&page, "map-five-hundred-panning").await;
    eprintln!(
        "the map of {NODES} nodes is {elements} elements; a 3 s pan drew a frame every \
         {median:.1} ms (median)"
    );
    screenshot(&page, "map-five-hundred-panned").await;
    page.close().await.unwrap();
    demo.stop().await;
}

/// The browser's key: kept across reloads, shared by its tabs (one person, one author), while
/// each tab is a peer of its own, never closed as a duplicate of the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_keeps_its_key_and_its_tabs_are_two_peers_of_one_author() {
    let a = start_node(&[]).await;
    let mut driver = Chromedriver::start().await;
    let page = driver.open(1100, 800).await;
    // The fingerprint the page says it writes under ("you are 1a2b-…").
    let who = || async {
        wait_for("the page to say who it is", || async {
            let text = page
                .find(Locator::Css("p.who"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let rest = text.split("you are ").nth(1)?;
            Some(rest.split_whitespace().next()?.to_owned())
        })
        .await
    };
    page.goto(&a.http_url()).await.unwrap();
    let first = who().await;
    assert_eq!(first.len(), 19, "{first}");
    page.refresh().await.unwrap();
    assert_eq!(who().await, first, "the same key after a reload");

    let tab = page.new_window(true).await.unwrap();
    page.switch_to_window(tab.handle).await.unwrap();
    page.goto(&a.http_url()).await.unwrap();
    assert_eq!(who().await, first, "the same key in another tab");
    wait_for("both tabs linked as browser peers", || async {
        let peers = get_json(&format!("{}/api/peers", a.http_url())).await;
        let browsers = peers["peers"]
            .as_array()?
            .iter()
            .filter(|p| p["kind"] == "browser")
            .count();
        (browsers == 2).then_some(())
    })
    .await;

    // What the second tab sends is stored under the browser's key.
    send_from_page(&page, "from the second tab").await;
    let author = wait_for("the node to store it", || async {
        messages(&a.http_url())
            .await
            .into_iter()
            .find(|m| m["data"] == "from the second tab")
            .map(|m| m["author"].as_str().unwrap().to_owned())
    })
    .await;
    assert!(
        author.starts_with(&first.replace('-', "")),
        "{author} is {first}'s key"
    );
    page.close().await.unwrap();
    a.stop().await;
}
