//! Test helpers: real nodes on 127.0.0.1 (listeners bound to port 0 and passed in), an HTTP
//! client, waiting on conditions with a deadline, a seed (v1) peer written here, and raw
//! hearsay peers (`raw`), a proxy that holds back a node's first words (`proxy`), and a disk
//! that fails on demand (`faulty`).

#![allow(dead_code)]

pub mod browser;
pub mod faulty;
pub mod proxy;
pub mod raw;
pub mod seed;

use hearsay::server::{self, NodeConfig, RunningNode};
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub async fn start_node(peers: &[String]) -> RunningNode {
    start_node_with(NodeConfig {
        peers: peers.to_vec(),
        ..NodeConfig::default()
    })
    .await
}

pub async fn start_node_with(config: NodeConfig) -> RunningNode {
    start_node_at("127.0.0.1:0".parse().unwrap(), config).await
}

/// A node on its own loopback address, `ip` (127.0.N.1: Linux routes all of 127.0.0.0/8),
/// both ports, dialing out from it: as far as address groups go, on its own machine.
pub async fn start_node_on(ip: [u8; 4], config: NodeConfig) -> RunningNode {
    let ip = std::net::IpAddr::from(ip);
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let v1 = TcpListener::bind((ip, 0)).await.unwrap();
    server::start(listener, Some(v1), config, CancellationToken::new()).unwrap()
}

/// A node on a given address (to start one again where it was).
pub async fn start_node_at(addr: std::net::SocketAddr, config: NodeConfig) -> RunningNode {
    let listener = TcpListener::bind(addr).await.unwrap();
    let v1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    server::start(listener, Some(v1), config, CancellationToken::new()).unwrap()
}

/// Polls `check` until it returns `Some`, failing the test after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_within(what, DEADLINE, check).await
}

/// [`wait_for`] with another deadline, for what takes the protocol's own timers to happen.
pub async fn wait_for_within<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn get_json(url: &str) -> Value {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The body of a GET, as text.
pub async fn get_text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// (status, JSON body) of a GET.
pub async fn get(url: &str) -> (u16, Value) {
    let r = client().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Publishes through `POST /api/messages`; returns the id.
pub async fn post_message(node: &RunningNode, data: &str) -> String {
    let r = client()
        .post(format!("{}/api/messages", node.http_url()))
        .json(&serde_json::json!({ "data": data }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let body: Value = r.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// Publishes through the seed's `GET /commit?msg=`.
pub async fn commit(node: &RunningNode, msg: &str) {
    let r = client()
        .get(format!("{}/commit", node.http_url()))
        .query(&[("msg", msg)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/");
}

/// Every message a node holds, oldest first, following `after` cursors page by page.
pub async fn messages(node_url: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(a) => format!("{node_url}/api/messages?limit=50&after={a}"),
            None => format!("{node_url}/api/messages?limit=50"),
        };
        let page = get_json(&url).await["messages"].as_array().unwrap().clone();
        if page.is_empty() {
            return all;
        }
        after = Some(page.last().unwrap()["id"].as_str().unwrap().to_owned());
        all.extend(page);
    }
}

pub async fn message_texts(node_url: &str) -> Vec<String> {
    messages(node_url)
        .await
        .iter()
        .map(|m| m["data"].as_str().unwrap().to_owned())
        .collect()
}

pub async fn status(node_url: &str) -> Value {
    get_json(&format!("{node_url}/api/status")).await
}

/// The node ids of its neighbours: the nodes in its active view, its pages, or (a page) its
/// links. Brief connections that carry a membership request are left out.
pub async fn neighbor_ids(node_url: &str) -> Vec<String> {
    let peers = get_json(&format!("{node_url}/api/peers")).await;
    let mut ids: Vec<String> = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["protocol"] == "v2" && p["neighbor"] == true)
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// How many nodes (not pages) are in a node's active view.
pub async fn node_neighbors(node_url: &str) -> usize {
    let peers = get_json(&format!("{node_url}/api/peers")).await;
    peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["neighbor"] == true && p["kind"] == "node")
        .count()
}

/// The neighbours a node pushes messages to: its links in the broadcast tree.
pub async fn eager_ids(node_url: &str) -> Vec<String> {
    let peers = get_json(&format!("{node_url}/api/peers")).await;
    let mut ids: Vec<String> = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["neighbor"] == true && p["eager"] == true)
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Waits until every node holds exactly `texts` (in any order), each once, and its engine
/// delivered exactly that many messages.
pub async fn wait_all_hold(urls: &[String], texts: &[String]) {
    let mut want = texts.to_vec();
    want.sort();
    for url in urls {
        wait_for(&format!("{url} to hold {} messages", want.len()), || {
            let want = want.clone();
            async move {
                let mut got = message_texts(url).await;
                got.sort();
                (got == want).then_some(())
            }
        })
        .await;
        let delivered = status(url).await["stats"]["delivered"].as_u64().unwrap();
        assert_eq!(
            delivered as usize,
            want.len(),
            "{url} delivered some message twice"
        );
    }
}

/// A timestamp an hour ago, the same all through one test run: messages made from it have
/// the same id wherever they are made, and sit well inside the retention window.
pub fn stamp_base() -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        now - 3_600_000
    })
}

/// Fills a store folder with messages `from..to` of one origin, as if a node had received
/// them (message `i` has the same id wherever it is made).
pub async fn fill_store(dir: &std::path::Path, from: u64, to: u64) {
    fill_store_with(dir, from, to, |i| format!("old message {i}")).await
}

/// [`fill_store`] with message `i`'s text made by `text`.
pub async fn fill_store_with(
    dir: &std::path::Path,
    from: u64,
    to: u64,
    text: impl Fn(u64) -> String,
) {
    use hearsay::store::{DiskStore, Store};
    use hearsay_proto::{Keypair, Message};
    let store = DiskStore::open(dir).unwrap();
    let author = Keypair::from_secret([42; 32]);
    let mut waits = Vec::new();
    for i in from..to {
        let data = text(i);
        // One author publishes at most 100 a second after its burst (its origin's quota):
        // stamped 10 ms apart, this history is one it could have published.
        let ts = stamp_base() + i * 10;
        let msg = Message::signed(&author, i + 1, ts, data);
        let (tx, rx) = tokio::sync::oneshot::channel();
        store.insert(msg, Some(tx));
        waits.push(rx);
    }
    for w in waits {
        w.await.unwrap().unwrap();
    }
    store.close();
}

/// Starts the `hearsay` binary as its own process and returns it with the base URL from its
/// first line ("hearsay node <id> listening on http://127.0.0.1:PORT"). What it prints after
/// that is read and dropped, so it never writes into a closed pipe.
pub fn spawn_hearsay(cmd: &mut std::process::Command) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start hearsay");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let url = line
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "unexpected first line {line:?}"
    );
    (child, url)
}

/// A CA made for a test, and a certificate it signed for `localhost` and 127.0.0.1.
pub struct TestCa {
    /// PEM files: the CA's certificate, the node's certificate and its key.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The node key's SubjectPublicKeyInfo, SHA-256, base64: what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes to trust that certificate.
    pub spki_sha256: String,
}

/// A CA, and a certificate it signed for `localhost` and 127.0.0.1, as PEM files in `dir`.
pub fn make_ca(dir: &std::path::Path) -> TestCa {
    use base64::Engine as _;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use sha2::Digest as _;
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let node_key = KeyPair::generate().unwrap();
    let node = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&node_key, &ca, &ca_key)
        .unwrap();
    let made = TestCa {
        ca: dir.join("ca.pem"),
        cert: dir.join("node.pem"),
        key: dir.join("node.key"),
        spki_sha256: base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(node_key.public_key_der())),
    };
    std::fs::write(&made.ca, ca.pem()).unwrap();
    std::fs::write(&made.cert, node.pem()).unwrap();
    std::fs::write(&made.key, node_key.serialize_pem()).unwrap();
    made
}
