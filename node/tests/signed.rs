//! Signed messages against real nodes: nobody can write in another's name, apps can publish
//! what they signed themselves, and a node's key (its identity) survives restarts and can be
//! backed up and restored with `hearsay key`.

mod common;

use common::raw::*;
use common::*;
use hearsay_proto::{Keypair, Message as HsMessage, MsgId};
use serde_json::{Value, json};
use std::process::Command;

async fn post_json(node: &hearsay::server::RunningNode, body: &Value) -> (u16, Value) {
    let r = client()
        .post(format!("{}/api/messages", node.http_url()))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The forgery the issue measured: take a message a node published, change its text,
/// recompute its id (anyone can) and push it from a fresh connection. It used to be stored
/// under the real node's name by both nodes; now it is dropped, counted, and its sender is
/// closed with the reason, while the real message stands.
#[tokio::test]
async fn a_forged_message_under_another_nodes_name_is_never_stored() {
    let a = start_node(&[]).await;
    let b = start_node(&[a.ws_url()]).await;
    wait_for("a and b linked", || async {
        (node_neighbors(&a.http_url()).await == 1).then_some(())
    })
    .await;
    post_message(&a, "I owe b 5 coins").await;
    wait_all_hold(&[b.http_url()], &["I owe b 5 coins".to_owned()]).await;

    let real: HsMessage = serde_json::from_value(messages(&b.http_url()).await[0].clone()).unwrap();
    let author = *real.author.key().unwrap();
    assert_eq!(author, a.key, "the message names a's key as its author");
    let mut forged = real.clone();
    forged.data = "I owe b 500 coins".into();
    forged.id = MsgId::from_digest(&hearsay_proto::message::digest(
        &author,
        forged.seq,
        forged.timestamp,
        &forged.data,
    ));
    assert!(
        forged.id_is_valid(),
        "the id matches: anyone can compute it"
    );

    let mut mallory = neighbour(&format!("{}/ws", b.ws_url()), &random_key()).await;
    use futures_util::SinkExt;
    mallory
        .send(tokio_tungstenite::tungstenite::Message::text(
            hearsay_proto::wire::Frame::encode_gossip(&forged, 1),
        ))
        .await
        .unwrap();
    let reason = close_reason(&mut mallory, DEADLINE).await;
    assert!(reason.contains("signature"), "{reason}");
    wait_for("the forgery counted", || async {
        (status(&b.http_url()).await["stats"]["bad_signatures"] == 1).then_some(())
    })
    .await;
    for node in [&a, &b] {
        let texts = message_texts(&node.http_url()).await;
        assert_eq!(
            texts,
            vec!["I owe b 5 coins".to_owned()],
            "only the real one"
        );
    }
}

/// An app signs with its own key and publishes through any node; the network checks it like
/// any other message. A bad signature, a wrong id or a missing field is a 400 that says why.
#[tokio::test]
async fn an_app_publishes_what_it_signed_itself() {
    let a = start_node(&[]).await;
    let b = start_node(&[a.ws_url()]).await;
    wait_for("a and b linked", || async {
        (node_neighbors(&a.http_url()).await == 1).then_some(())
    })
    .await;
    let app = Keypair::from_secret([77; 32]);
    let msg = HsMessage::signed(&app, 1, stamp_base(), "signed by the app".into());
    let body = json!({
        "author": msg.author, "seq": msg.seq, "timestamp": msg.timestamp,
        "data": msg.data, "sig": msg.sig,
    });
    let (code, reply) = post_json(&a, &body).await;
    assert_eq!(code, 201, "{reply}");
    assert_eq!(reply["id"], json!(msg.id));
    wait_all_hold(&[b.http_url()], &["signed by the app".to_owned()]).await;
    let held = messages(&b.http_url()).await;
    assert_eq!(held[0]["author"], json!(app.public()));
    assert_eq!(held[0]["sig"], json!(msg.sig));
    // Again: already held, nothing new.
    assert_eq!(post_json(&a, &body).await.0, 200);

    // The text changed after signing: the signature no longer fits.
    let mut bad = body.clone();
    bad["data"] = json!("changed after signing");
    let (code, reply) = post_json(&a, &bad).await;
    assert_eq!(code, 400);
    assert!(reply["error"].as_str().unwrap().contains("sig"), "{reply}");
    // A wrong id, and a missing signature.
    let mut wrong_id = body.clone();
    wrong_id["id"] = json!("00".repeat(16));
    let (code, reply) = post_json(&a, &wrong_id).await;
    assert_eq!(code, 400);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("id does not match"),
        "{reply}"
    );
    let mut unsigned = body.clone();
    unsigned.as_object_mut().unwrap().remove("sig");
    let (code, reply) = post_json(&a, &unsigned).await;
    assert_eq!(code, 400);
    assert!(
        reply["error"].as_str().unwrap().contains("needs all of"),
        "{reply}"
    );
    let texts = message_texts(&a.http_url()).await;
    assert_eq!(texts, vec!["signed by the app".to_owned()]);
}

fn hearsay(args: &[&str], dir: &std::path::Path, stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearsay"))
        .arg("key")
        .args(args)
        .arg("--data")
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A node's key is made on first start, kept in its folder (owner-only), and is the same
/// after a restart; `hearsay key` shows it, exports it and imports it elsewhere.
#[tokio::test]
async fn a_nodes_key_is_kept_shown_backed_up_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let config = || hearsay::server::NodeConfig {
        data: Some(dir.path().to_owned()),
        ..Default::default()
    };
    let n = start_node_with(config()).await;
    let first = status(&n.http_url()).await;
    let (id, key) = (first["id"].clone(), first["key"].clone());
    assert_eq!(key.as_str().unwrap().len(), 64);
    assert!(key.as_str().unwrap().starts_with(id.as_str().unwrap()));
    let fingerprint = first["fingerprint"].as_str().unwrap().to_owned();
    n.stop().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("node.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner reads the key");
    }
    let n = start_node_with(config()).await;
    assert_eq!(
        status(&n.http_url()).await["key"],
        key,
        "the same key after a restart"
    );
    n.stop().await;

    let (ok, shown, err) = hearsay(&["show"], dir.path(), None);
    assert!(ok, "{err}");
    assert!(
        shown.contains(key.as_str().unwrap()) && shown.contains(&fingerprint),
        "{shown}"
    );
    let (ok, secret, err) = hearsay(&["export"], dir.path(), None);
    assert!(ok, "{err}");
    assert_eq!(secret.trim().len(), 64);

    let other = tempfile::tempdir().unwrap();
    let (ok, _, err) = hearsay(&["import"], other.path(), Some(&secret));
    assert!(ok, "{err}");
    let (_, shown, _) = hearsay(&["show"], other.path(), None);
    assert!(shown.contains(key.as_str().unwrap()), "restored: {shown}");
    // A folder that has a key keeps it unless told otherwise; bad input says what a key is.
    let (ok, _, err) = hearsay(&["import"], other.path(), Some(&secret));
    assert!(!ok && err.contains("--force"), "{err}");
    let (ok, _, err) = hearsay(&["import", "--force"], other.path(), Some("not a key"));
    assert!(!ok && err.contains("64 hex digits"), "{err}");
}
