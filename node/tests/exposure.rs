//! A node that is safe to expose, against real nodes on 127.0.0.1: security headers and
//! `HEAD`, no cross-site writes (and `--allow-origin` with CORS), and the dialing rules for
//! addresses learned from peers.

mod common;

use common::raw::{neighbour, random_key};
use common::*;
use futures_util::SinkExt;
use hearsay::origin::Origins;
use hearsay::server::NodeConfig;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn send(req: reqwest::RequestBuilder) -> (u16, String, reqwest::header::HeaderMap) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.text().await.unwrap(), headers)
}

#[tokio::test]
async fn the_page_and_api_carry_security_headers_and_answer_head() {
    let node = start_node(&[]).await;
    let url = node.http_url();
    for path in ["/", "/status", "/api/status"] {
        let (status, body, headers) = send(client().get(format!("{url}{path}"))).await;
        assert_eq!(status, 200, "{path}: {body}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        for part in [
            "default-src 'none'",
            "script-src 'self' 'wasm-unsafe-eval'",
            "connect-src 'self' ws: wss:",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");

        let (status, body, _) = send(client().head(format!("{url}{path}"))).await;
        assert_eq!(status, 200, "HEAD {path}");
        assert!(body.is_empty(), "HEAD {path} has no body");
    }
    node.stop().await;
}

#[tokio::test]
async fn cross_site_writes_are_refused_and_curl_and_the_address_bar_still_work() {
    let node = start_node(&[]).await;
    let url = node.http_url();
    let host = node.addr.to_string();
    let forbidden = |body: &str| {
        let v: Value = serde_json::from_str(body).unwrap();
        let e = v["error"].as_str().unwrap().to_owned();
        assert!(e.contains("cross-site"), "{e}");
    };

    // What another site's page can send without asking first: a text/plain POST, an image
    // pointing at /commit, a link to /add.
    let (status, body, _) = send(
        client()
            .post(format!("{url}/api/messages"))
            .header("content-type", "text/plain")
            .header("origin", "http://evil.example")
            .header("sec-fetch-site", "cross-site")
            .body(r#"{"data":"from evil, posted"}"#),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    forbidden(&body);
    // A browser too old for Sec-Fetch-Site still sends Origin on a POST.
    let (status, body, _) = send(
        client()
            .post(format!("{url}/api/messages"))
            .header("origin", "http://localhost:9999")
            .body(r#"{"data":"from evil, old browser"}"#),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    for path in [
        "/commit?msg=from%20evil%2C%20img",
        "/add?address=ws://127.0.0.1:9",
    ] {
        let (status, body, _) = send(
            client()
                .get(format!("{url}{path}"))
                .header("sec-fetch-site", "cross-site"),
        )
        .await;
        assert_eq!(status, 403, "{path}: {body}");
        forbidden(&body);
    }

    // curl (no headers), the page itself (same origin), the address bar (none).
    let (status, body, _) = send(
        client()
            .post(format!("{url}/api/messages"))
            .body(r#"{"data":"from curl"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body, _) = send(
        client()
            .post(format!("{url}/api/messages"))
            .header("origin", format!("http://{host}"))
            .header("sec-fetch-site", "same-origin")
            .body(r#"{"data":"from the page"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body, _) = send(
        client()
            .get(format!("{url}/commit?msg=from%20the%20address%20bar"))
            .header("sec-fetch-site", "none"),
    )
    .await;
    assert_eq!(status, 303, "{body}");

    let mut texts = message_texts(&url).await;
    texts.sort();
    assert_eq!(
        texts,
        ["from curl", "from the address bar", "from the page"],
        "nothing from the other site was stored"
    );
    node.stop().await;
}

#[tokio::test]
async fn an_allowed_web_app_gets_cors_answers_and_others_do_not() {
    let app = "https://app.example.org";
    let node = start_node_with(NodeConfig {
        origins: Origins::new(&[app.to_owned()]).unwrap(),
        ..NodeConfig::default()
    })
    .await;
    let url = node.http_url();
    let preflight = |origin: &str| {
        client()
            .request(reqwest::Method::OPTIONS, format!("{url}/api/messages"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
    };
    let (status, _, headers) = send(preflight(app)).await;
    assert_eq!(status, 204);
    assert_eq!(headers["access-control-allow-origin"], app);
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("content-type")
    );

    let (status, body, headers) = send(
        client()
            .post(format!("{url}/api/messages"))
            .header("origin", app)
            .header("sec-fetch-site", "cross-site")
            .header("content-type", "application/json")
            .body(r#"{"data":"from the app"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers["access-control-allow-origin"], app);

    let (status, body, headers) = send(preflight("https://evil.example")).await;
    assert_eq!(status, 403, "{body}");
    assert!(!headers.contains_key("access-control-allow-origin"));
    assert_eq!(message_texts(&url).await, ["from the app"]);
    node.stop().await;
}

/// Tells `node` (through a raw neighbour) to link to `address`, as a `FORWARD_JOIN` that has
/// run out of steps does, and waits until the node has tried: `Some(reason)` if the dialing
/// rules refused it, `None` if it connected (to `target`) instead.
async fn learn_and_try(
    node: &hearsay::server::RunningNode,
    address: &str,
    target: &tokio::net::TcpListener,
) -> Option<String> {
    let url = node.http_url();
    let refused_before = status(&url).await["dialing"]["refused"].as_u64().unwrap();
    let key = random_key();
    let mut ws = neighbour(&node.ws_url(), &key).await;
    let record = json!({ "id": format!("{:032x}", rand::random::<u128>()), "address": address });
    let frame = json!({ "type": "FORWARD_JOIN", "peer": record, "ttl": 0 });
    ws.send(Message::text(frame.to_string())).await.unwrap();
    let what = format!("{url} to refuse {address}");
    tokio::select! {
        accepted = target.accept() => {
            accepted.unwrap();
            None
        }
        reason = wait_for(&what, || {
            let url = url.clone();
            async move {
                let dialing = status(&url).await["dialing"].clone();
                (dialing["refused"].as_u64()? > refused_before)
                    .then(|| dialing["last_refused"].as_str().unwrap_or_default().to_owned())
            }
        }) => Some(reason),
    }
}

#[tokio::test]
async fn addresses_learned_from_peers_are_dialed_only_where_the_node_lives() {
    // Somewhere on loopback to be dialed: a dial the rules let through arrives here.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = target.local_addr().unwrap().port();

    // A node advertised at a public address (as behind a NAT that forwards its port) dials
    // no loopback address, however it is spelled, and no private one.
    let public = start_node_with(NodeConfig {
        advertise_host: Some("198.51.100.7".into()),
        ..NodeConfig::default()
    })
    .await;
    for address in [
        format!("ws://127.0.0.1:{port}"),
        format!("ws://localhost:{port}"),
        format!("ws://[::ffff:127.0.0.1]:{port}"),
    ] {
        let why = learn_and_try(&public, &address, &target).await;
        let why = why.unwrap_or_else(|| panic!("the public node dialed {address}"));
        assert!(why.contains("loopback"), "{address}: {why}");
    }
    let why = learn_and_try(&public, "ws://10.0.0.1:3000", &target)
        .await
        .unwrap();
    assert!(
        why.contains("private") && why.contains("--allow-private-dials"),
        "{why}"
    );

    // A node on loopback dials loopback, but never a link-local (metadata) address.
    let local = start_node(&[]).await;
    let why = learn_and_try(&local, "ws://169.254.169.254:80", &target)
        .await
        .unwrap();
    assert!(why.contains("link-local"), "{why}");
    let dialed = learn_and_try(&local, &format!("ws://127.0.0.1:{port}"), &target).await;
    assert_eq!(dialed, None, "the loopback node dials loopback");

    // --allow-private-dials lifts the loopback rule.
    let lifted = start_node_with(NodeConfig {
        advertise_host: Some("198.51.100.8".into()),
        allow_private_dials: true,
        ..NodeConfig::default()
    })
    .await;
    let dialed = learn_and_try(&lifted, &format!("ws://localhost:{port}"), &target).await;
    assert_eq!(dialed, None, "the lifted node dials loopback");
    for n in [public, local, lifted] {
        n.stop().await;
    }
}

#[tokio::test]
async fn the_operator_peer_flag_and_loopback_add_are_trusted() {
    // A public node still dials what its operator names, even on loopback.
    let other = start_node(&[]).await;
    let public = start_node_with(NodeConfig {
        advertise_host: Some("198.51.100.9".into()),
        ..NodeConfig::default()
    })
    .await;
    let (status, body) = get(&format!(
        "{}/add?address={}",
        public.http_url(),
        other.ws_url()
    ))
    .await;
    assert!(status == 303 || status == 200, "{status}: {body}");
    wait_for(
        "the public node to link to what its operator added",
        || async { (node_neighbors(&public.http_url()).await >= 1).then_some(()) },
    )
    .await;
    for n in [public, other] {
        n.stop().await;
    }
}
