//! What operators scrape: `/metrics` in the Prometheus text format whose counters move, and
//! `/healthz`.

mod common;

use common::*;
use std::collections::HashMap;

/// Parses the exposition strictly enough to fail on anything malformed: `# HELP`/`# TYPE`
/// before each family's samples, `name{labels} value` samples, and the closing `# EOF`.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "the exposition ends with # EOF"
    );
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert!(typed.contains(family), "sample before its # TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        samples.insert(
            series.to_owned(),
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value: {line}")),
        );
    }
    samples
}

async fn scrape(url: &str) -> HashMap<String, f64> {
    let r = client().get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("text")
    );
    parse(&r.text().await.unwrap())
}

#[tokio::test]
async fn metrics_parse_and_move_after_a_commit() {
    let a = start_node(&[]).await;
    let b = start_node(&[a.ws_url()]).await;
    wait_for("a and b linked", || async {
        (neighbor_ids(&b.http_url()).await.len() == 1).then_some(())
    })
    .await;
    let before = scrape(&b.http_url()).await;
    assert_eq!(before["hearsay_messages_delivered_total"], 0.0);
    assert_eq!(before["hearsay_peers{kind=\"node\"}"], 1.0);

    commit(&a, "count me").await;
    wait_for("b to count the delivery", || async {
        (scrape(&b.http_url()).await["hearsay_messages_delivered_total"] == 1.0).then_some(())
    })
    .await;
    let after = scrape(&b.http_url()).await;
    assert_eq!(after["hearsay_messages_received_total"], 1.0);
    assert!(after["hearsay_bytes_in_total"] > before["hearsay_bytes_in_total"]);
    assert_eq!(after["hearsay_messages_stored"], 1.0);
    let at_a = scrape(&a.http_url()).await;
    assert_eq!(at_a["hearsay_messages_published_total"], 1.0);

    let (status, body) = get(&format!("{}/healthz", a.http_url())).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    a.stop().await;
    b.stop().await;
}
