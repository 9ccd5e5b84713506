//! Nodes across TLS: a node serving HTTPS and WSS with a certificate from a CA made here
//! (rcgen), a node that dials it over `wss://` trusting that CA (`--tls-ca`), and one that does
//! not, whose dial fails with the certificate's reason where the operator looks.

mod common;

use common::*;
use hearsay::server::NodeConfig;
use std::path::Path;

/// An HTTPS client that trusts the test's CA.
fn https_client(ca: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap()
}

async fn get_over(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

async fn texts_over(client: &reqwest::Client, base: &str) -> Vec<String> {
    let body = get_over(client, &format!("{base}/api/messages")).await;
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_dial_each_other_over_wss_and_a_certificate_nobody_vouches_for_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let common::TestCa { ca, cert, key, .. } = common::make_ca(dir.path());
    let a = start_node_with(NodeConfig {
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Default::default()
    })
    .await;
    let wss = format!("wss://127.0.0.1:{}", a.addr.port());
    let https = format!("https://127.0.0.1:{}", a.addr.port());
    let client = https_client(&ca);
    // It advertises the address it is dialed at.
    let st = get_over(&client, &format!("{https}/api/status")).await;
    assert_eq!(st["addresses"][0], wss.as_str(), "{st}");

    let b = start_node_with(NodeConfig {
        peers: vec![wss.clone()],
        tls_ca: vec![ca.clone()],
        ..Default::default()
    })
    .await;
    wait_for("b to link to a over wss", || async {
        (neighbor_ids(&b.http_url()).await == [a.id.to_string()]).then_some(())
    })
    .await;
    // Messages cross the TLS link both ways, each once.
    post_message(&b, "from b").await;
    let body = serde_json::json!({ "data": "from a" }).to_string();
    let posted = client
        .post(format!("{https}/api/messages"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success(), "{}", posted.status());
    let both = ["from a".to_owned(), "from b".to_owned()];
    wait_all_hold(&[b.http_url()], &both).await;
    wait_for("a to hold both", || async {
        let mut held = texts_over(&client, &https).await;
        held.sort();
        (held == both).then_some(())
    })
    .await;

    // A node without the CA cannot vouch for a's certificate: its dial fails, and says why.
    let c = start_node_with(NodeConfig {
        peers: vec![wss.clone()],
        ..Default::default()
    })
    .await;
    let why = wait_for("c's failed dial in /api/peers", || async {
        let peers = get_json(&format!("{}/api/peers", c.http_url())).await;
        let link = peers["links"]
            .as_array()?
            .iter()
            .find(|l| l["address"] == wss.as_str())?
            .clone();
        link["last_error"].as_str().map(str::to_owned)
    })
    .await;
    assert!(why.contains("certificate"), "{why}");
    assert!(neighbor_ids(&c.http_url()).await.is_empty());
    a.stop().await;
    b.stop().await;
    c.stop().await;
}
