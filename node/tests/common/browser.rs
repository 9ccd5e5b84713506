//! A real Chromium (Debian's `chromium`, headless) driven through Debian's `chromedriver` with
//! fantoccini. Nothing here skips: if the browser cannot start, the test fails and says how to
//! install it.

use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{DEADLINE, wait_for};

/// One chromedriver process; each [`Chromedriver::open`] starts a separate browser.
pub struct Chromedriver {
    child: Child,
    url: String,
    profiles: Vec<std::path::PathBuf>,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Killing chromedriver leaves its browsers running, and a page left open keeps
        // dialing the addresses it learnt: a later test's node on a reused port would get its
        // messages. Each browser is found by its own profile folder (the regex is anchored at
        // the end: profile 1 must not match profile 10).
        for p in &self.profiles {
            let _ = Command::new("pkill")
                .arg("-KILL")
                .arg("-f")
                .arg("--")
                .arg(format!("--user-data-dir={}( |$)", p.display()))
                .status();
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

impl Chromedriver {
    pub async fn start() -> Chromedriver {
        // chromedriver cannot report a port it picked itself, so take a free one from the OS.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .args(std::env::var("CHROMEDRIVER_LOG").map(|p| vec!["--verbose".to_owned(), format!("--log-path={p}")]).unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start chromedriver ({e}): install it with `bash scripts/setup-web --browser`")
            });
        let addr = format!("127.0.0.1:{port}");
        wait_for("chromedriver to listen", || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) }
        })
        .await;
        Chromedriver {
            child,
            url: format!("http://{addr}"),
            profiles: Vec::new(),
        }
    }

    /// A new headless browser window of `width`×`height`.
    pub async fn open(&mut self, width: u32, height: u32) -> Client {
        self.open_with(width, height, &[]).await
    }

    /// [`Chromedriver::open`] with more Chromium flags.
    pub async fn open_with(&mut self, width: u32, height: u32, extra: &[String]) -> Client {
        // One profile per browser across the whole test binary (tests run in parallel).
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile =
            std::env::temp_dir().join(format!("hearsay-chromium-{}-{n}", std::process::id()));
        self.profiles.push(profile.clone());
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ]
        .map(str::to_owned)
        .to_vec();
        args.push(format!("--window-size={width},{height}"));
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra.iter().cloned());
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args }
        });
        let caps = caps.as_object().unwrap().clone();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot start Chromium through chromedriver: {e}"))
    }
}

/// The texts of the messages a page shows, newest first.
pub async fn page_messages(page: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for el in page
        .find_all(Locator::Css("li.message .text"))
        .await
        .unwrap_or_default()
    {
        if let Ok(t) = el.text().await {
            out.push(t);
        }
    }
    out
}

/// Waits until the page shows `text` (exactly once).
pub async fn wait_page_shows(page: &Client, text: &str) {
    wait_for(&format!("the page to show {text:?}"), || async {
        page_messages(page)
            .await
            .iter()
            .any(|m| m == text)
            .then_some(())
    })
    .await;
    let n = page_messages(page)
        .await
        .iter()
        .filter(|m| *m == text)
        .count();
    assert_eq!(n, 1, "the page shows {text:?} {n} times");
}

/// The texts of the messages the page keeps in the browser's IndexedDB.
pub async fn saved_texts(page: &Client) -> Vec<String> {
    let script = "const done = arguments[0]; \
        const open = indexedDB.open('hearsay'); \
        open.onerror = () => done([]); \
        open.onsuccess = () => { \
          const db = open.result; \
          if (!db.objectStoreNames.contains('messages')) { db.close(); return done([]); } \
          const all = db.transaction('messages').objectStore('messages').getAll(); \
          all.onsuccess = () => { db.close(); done(all.result.map(v => JSON.parse(v).data)); }; \
          all.onerror = () => { db.close(); done([]); }; \
        };";
    let v = page.execute_async(script, vec![]).await.unwrap();
    serde_json::from_value(v).unwrap_or_default()
}

/// How many elements on the page match `css`.
pub async fn count(page: &Client, css: &str) -> usize {
    page.find_all(Locator::Css(css))
        .await
        .map(|v| v.len())
        .unwrap_or(0)
}

/// How far the map's latest journey is drawn: the peers ringed and the links lit. Each hop
/// is one path of each, its `data-count` saying how many it draws.
pub async fn lit(page: &Client) -> (u64, u64) {
    let sum = |class: &str| {
        format!(
            "return [...document.querySelectorAll('#map .journey .{class}.lit')]
                .reduce((n, e) => n + Number(e.dataset.count), 0)"
        )
    };
    let mut out = [0; 2];
    for (i, class) in ["ring", "link"].into_iter().enumerate() {
        out[i] = page
            .execute(&sum(class), vec![])
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
    }
    (out[0], out[1])
}

/// The text of the element with this id, if the page shows it.
pub async fn text_of(page: &Client, id: &str) -> Option<String> {
    page.find(Locator::Id(id)).await.ok()?.text().await.ok()
}

/// Number of links the page shows as open.
pub async fn open_links(page: &Client) -> usize {
    count(page, "li.link.open").await
}

/// Types `text` into the page's send box and presses Enter; checks the box clears.
pub async fn send_from_page(page: &Client, text: &str) {
    let input = page.find(Locator::Id("compose")).await.unwrap();
    input.send_keys(&format!("{text}\u{E007}")).await.unwrap();
    wait_for("the send box to clear", || async {
        let v = input.prop("value").await.ok().flatten().unwrap_or_default();
        v.is_empty().then_some(())
    })
    .await;
}

/// Saves a screenshot under `target/screenshots/`.
pub async fn screenshot(page: &Client, name: &str) -> std::path::PathBuf {
    let png = tokio::time::timeout(DEADLINE, page.screenshot())
        .await
        .unwrap()
        .unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    path
}

/// Milliseconds from navigation start to the first rendered message list, as the page marks it.
pub async fn first_render_ms(page: &Client) -> f64 {
    let script = "const m = performance.getEntriesByName('hearsay:messages-rendered'); \
                  return m.length ? m[0].startTime : null;";
    let v = wait_for("the page to mark its first render", || async {
        page.execute(script, vec![])
            .await
            .ok()
            .and_then(|v| v.as_f64())
    })
    .await;
    tokio::time::sleep(Duration::ZERO).await;
    v
}

/// chromedriver's log of the browser's console (what Selenium's `get_log("browser")` reads).
#[derive(Debug)]
struct ConsoleLog;

impl fantoccini::wd::WebDriverCompatibleCommand for ConsoleLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }
    fn method_and_body(&self, _: &url::Url) -> (warp::http::Method, Option<String>) {
        (
            warp::http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_owned()),
        )
    }
}

/// The console messages the page has logged since the last call.
pub async fn console(page: &Client) -> Vec<String> {
    let entries = page
        .issue_cmd(ConsoleLog)
        .await
        .unwrap_or_else(|e| panic!("cannot read the browser's console: {e}"));
    entries
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}
