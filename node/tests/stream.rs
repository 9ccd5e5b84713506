//! `GET /api/stream` on real nodes: Server-Sent Events as messages are stored, resuming from
//! `Last-Event-ID` without losing or repeating one, and clear errors for a bad cursor; and
//! `GET /api/messages` paged from either end of a real database file.

mod common;

use common::*;
use serde_json::Value;

/// One open event stream, read a chunk at a time.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

/// An event as the stream sent it: its id and its data as JSON.
#[derive(Debug)]
struct Event {
    id: String,
    kind: String,
    data: Value,
}

impl Events {
    async fn open(url: &str, last_event_id: Option<&str>) -> Events {
        let mut request = client().get(format!("{url}/api/stream"));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments are skipped), within the test deadline.
    async fn next(&mut self) -> Event {
        tokio::time::timeout(DEADLINE, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let (mut id, mut kind, mut data) = (None, None, String::new());
                    for line in block.lines() {
                        let (field, value) = line.split_once(':').unwrap_or((line, ""));
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        match field {
                            "id" => id = Some(value.to_owned()),
                            "event" => kind = Some(value.to_owned()),
                            "data" => data.push_str(value),
                            _ => {}
                        }
                    }
                    if let Some(id) = id {
                        return Event {
                            id,
                            kind: kind.unwrap_or_default(),
                            data: serde_json::from_str(&data).unwrap(),
                        };
                    }
                    continue;
                }
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .unwrap()
                    .expect("the stream ended");
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("an event in time")
    }
}

#[tokio::test]
async fn a_stream_sends_each_stored_message_and_resumes_where_it_left_off() {
    let a = start_node(&[]).await;
    let b = start_node(&[a.ws_url()]).await;
    wait_for("a and b linked", || async {
        (neighbor_ids(&b.http_url()).await.len() == 1).then_some(())
    })
    .await;

    let mut events = Events::open(&b.http_url(), None).await;
    for i in 0..3 {
        post_message(&a, &format!("live {i}")).await;
    }
    let mut seen = Vec::new();
    for i in 0..3 {
        let e = events.next().await;
        assert_eq!(e.kind, "message");
        assert_eq!(e.data["data"], format!("live {i}"));
        assert_eq!(
            e.data["id"],
            e.id.as_str(),
            "the message id is the event id"
        );
        seen.push(e);
    }
    // The same JSON as /api/messages.
    let stored = messages(&b.http_url()).await;
    let as_events: Vec<&Value> = seen.iter().map(|e| &e.data).collect();
    assert_eq!(stored.iter().collect::<Vec<_>>(), as_events);

    // Disconnect, miss two, come back with the last id seen: exactly the two, in order,
    // and then what is new.
    drop(events);
    post_message(&a, "missed 0").await;
    post_message(&b, "missed 1").await;
    wait_all_hold(
        &[b.http_url()],
        &["live 0", "live 1", "live 2", "missed 0", "missed 1"].map(String::from),
    )
    .await;
    let mut events = Events::open(&b.http_url(), Some(&seen[2].id)).await;
    assert_eq!(events.next().await.data["data"], "missed 0");
    assert_eq!(events.next().await.data["data"], "missed 1");
    post_message(&a, "after").await;
    assert_eq!(events.next().await.data["data"], "after");

    // ?after= works the same way, from the start of the history.
    let mut from_first = {
        let response = client()
            .get(format!("{}/api/stream?after={}", b.http_url(), seen[0].id))
            .send()
            .await
            .unwrap();
        Events {
            response,
            buffer: String::new(),
        }
    };
    assert_eq!(from_first.next().await.data["data"], "live 1");

    // A node with streams open still stops (and ends them).
    a.stop().await;
    tokio::time::timeout(DEADLINE, b.stop())
        .await
        .expect("b stops with two streams open");
    drop((events, from_first));
}

#[tokio::test]
async fn a_stream_refuses_a_cursor_it_does_not_know() {
    let n = start_node(&[]).await;
    for (cursor, status) in [("00".repeat(16), 404), ("not-an-id".to_owned(), 400)] {
        let r = client()
            .get(format!("{}/api/stream", n.http_url()))
            .header("Last-Event-ID", &cursor)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{cursor}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("id"), "{body}");
    }
    n.stop().await;
}

/// A reader opens a long history at its end: `order=newest` gives the newest messages first,
/// `before` pages back from there without a gap or a repeat, and the oldest-first pages are
/// as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_back_from_the_newest_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    fill_store(dir.path(), 0, 250).await;
    let node = start_node_with(hearsay::server::NodeConfig {
        data: Some(dir.path().to_owned()),
        ..Default::default()
    })
    .await;
    let u = node.http_url();
    let texts = |page: &Value| -> Vec<String> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["data"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut seen = Vec::new();
    let mut url = format!("{u}/api/messages?order=newest&limit=100");
    loop {
        let page = get_json(&url).await;
        let batch = texts(&page);
        let Some(last) = page["messages"].as_array().unwrap().last() else {
            break;
        };
        url = format!(
            "{u}/api/messages?before={}&limit=100",
            last["id"].as_str().unwrap()
        );
        seen.extend(batch);
    }
    let expected: Vec<String> = (0..250).rev().map(|i| format!("old message {i}")).collect();
    assert_eq!(seen, expected);
    // Oldest first, as before.
    let first = texts(&get_json(&format!("{u}/api/messages?limit=2")).await);
    assert_eq!(first, ["old message 0", "old message 1"]);
}
