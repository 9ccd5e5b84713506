//! Bad input gets a clear error — HTTP 4xx with a JSON body, or a WebSocket close with a
//! reason — and the node stays up.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

async fn expect_error(url: &str, status: u16, mentions: &str) {
    let (got, body) = get(url).await;
    assert_eq!(got, status, "{url}: {body}");
    let err = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{url}: no error field in {body}"));
    assert!(
        err.contains(mentions),
        "{url}: {err:?} should mention {mentions:?}"
    );
}

#[tokio::test]
async fn bad_http_input_gets_4xx_json() {
    let n = start_node(&[]).await;
    let u = n.http_url();
    expect_error(&format!("{u}/commit"), 400, "msg").await;
    expect_error(&format!("{u}/commit?msg="), 400, "empty").await;
    expect_error(&format!("{u}/add"), 400, "address").await;
    expect_error(&format!("{u}/add?address=http://example.org"), 400, "ws://").await;
    expect_error(
        &format!("{u}/add?address={}", n.ws_url()),
        400,
        "own address",
    )
    .await;
    for limit in ["abc", "0", "-1", "5000"] {
        expect_error(&format!("{u}/api/messages?limit={limit}"), 400, "limit").await;
    }
    expect_error(&format!("{u}/api/messages?after=zz"), 400, "after").await;
    expect_error(
        &format!("{u}/api/messages?after={}", "ab".repeat(16)),
        404,
        "no message",
    )
    .await;
    let id = "ab".repeat(16);
    expect_error(&format!("{u}/api/messages?before=zz"), 400, "before").await;
    expect_error(&format!("{u}/api/messages?before={id}"), 404, "no message").await;
    for (query, says) in [
        (format!("after={id}&before={id}"), "not both"),
        ("order=sideways".to_owned(), "`order` must be"),
        (format!("order=newest&after={id}"), "use `before`"),
        (format!("order=oldest&before={id}"), "use `after`"),
    ] {
        expect_error(&format!("{u}/api/messages?{query}"), 400, says).await;
    }
    expect_error(&format!("{u}/nope"), 404, "not found").await;
    expect_error(&format!("{u}/ws"), 400, "WebSocket").await;

    let c = client();
    let post = |body: Vec<u8>| c.post(format!("{u}/api/messages")).body(body).send();
    for (body, status, mentions) in [
        (b"not json".to_vec(), 400, "JSON"),
        (br#"{"data":5}"#.to_vec(), 400, "JSON"),
        (b"{}".to_vec(), 400, "data"),
        (br#"{"data":""}"#.to_vec(), 400, "empty"),
        (
            json!({ "data": "x".repeat(70_000) })
                .to_string()
                .into_bytes(),
            400,
            "limit",
        ),
        (vec![b' '; 300 * 1024], 413, "larger"),
    ] {
        let r = post(body).await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(mentions), "{v}");
    }
    let r = c.delete(format!("{u}/api/messages")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"].is_string());

    // Still serving, nothing stored.
    assert_eq!(status(&u).await["messages"], 0);
    n.stop().await;
}

#[tokio::test]
async fn the_status_page_shows_messages_as_text() {
    let n = start_node(&[]).await;
    commit(&n, "<script>alert('x')</script> & <b>bold</b>").await;
    let page = get_text(&format!("{}/status", n.http_url())).await;
    assert!(
        page.contains("&lt;script&gt;alert('x')&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"));
    n.stop().await;
}

#[tokio::test]
async fn a_peer_of_another_protocol_version_is_closed_with_both_versions_named() {
    let n = start_node(&[]).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/ws", n.ws_url()))
        .await
        .unwrap();
    let hello = json!({
        "type": "HELLO", "protocol": "hearsay", "version": 2, "id": "11".repeat(16),
        "kind": "node", "addresses": []
    });
    ws.send(Message::text(hello.to_string())).await.unwrap();
    let reason = common::raw::close_reason(&mut ws, DEADLINE).await;
    let ours = format!("v{}", hearsay_proto::wire::PROTOCOL_VERSION);
    assert!(
        reason.contains("version") && reason.contains("v2") && reason.contains(&ours),
        "{reason:?}"
    );
    n.stop().await;
}

#[tokio::test]
async fn bad_frames_are_counted_and_a_flood_of_them_closes_with_a_reason() {
    let n = start_node(&[]).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/ws", n.ws_url()))
        .await
        .unwrap();
    let key = common::raw::random_key();
    let hello = common::raw::hello(&key, "node", &[]);
    ws.send(Message::text(hello.to_string())).await.unwrap();
    common::raw::prove(&mut ws, &key).await.unwrap();
    for bad in [
        "not json",
        "{}",
        r#"{"type":"NOPE"}"#,
        r#"{"type":"GOSSIP","id":"00"}"#,
    ] {
        ws.send(Message::text(bad)).await.unwrap();
    }
    ws.send(Message::binary(vec![0u8, 1, 2])).await.unwrap();
    // A message whose id does not match its content is refused, not delivered.
    let forged = json!({
        "type": "GOSSIP", "id": "22".repeat(16), "author": "11".repeat(32),
        "seq": 1, "timestamp": 1, "data": "forged"
    });
    ws.send(Message::text(forged.to_string())).await.unwrap();
    wait_for("six bad frames counted", || async {
        (status(&n.http_url()).await["stats"]["bad_frames"] == 6).then_some(())
    })
    .await;
    assert_eq!(status(&n.http_url()).await["messages"], 0);

    for _ in 0..40 {
        if ws.send(Message::text("garbage")).await.is_err() {
            break;
        }
    }
    let reason = common::raw::close_reason(&mut ws, DEADLINE).await;
    assert!(reason.contains("too many bad frames"), "{reason:?}");
    // The node is fine.
    post_message(&n, "still here").await;
    n.stop().await;
}

#[tokio::test]
async fn a_v2_frame_before_hello_is_a_protocol_error() {
    let n = start_node(&[]).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(n.ws_url()).await.unwrap();
    ws.send(Message::text(r#"{"type":"PING","nonce":1}"#))
        .await
        .unwrap();
    let reason = common::raw::close_reason(&mut ws, DEADLINE).await;
    assert!(reason.contains("expected HELLO"), "{reason:?}");
    n.stop().await;
}

#[tokio::test]
async fn a_frame_over_the_limit_is_closed_with_a_reason() {
    let n = start_node(&[]).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/ws", n.ws_url()))
        .await
        .unwrap();
    let key = common::raw::random_key();
    let hello = common::raw::hello(&key, "node", &[]);
    ws.send(Message::text(hello.to_string())).await.unwrap();
    common::raw::prove(&mut ws, &key).await.unwrap();
    let huge = "x".repeat(hearsay_proto::wire::MAX_FRAME_BYTES + 1);
    let _ = ws.send(Message::text(huge)).await;
    let reason = common::raw::close_reason(&mut ws, DEADLINE).await;
    assert!(
        reason.contains("too long") || reason.contains("limit"),
        "{reason:?}"
    );
    // The node is fine.
    post_message(&n, "still here").await;
    n.stop().await;
}
