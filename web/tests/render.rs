//! The page's components and browser glue, run in headless Chromium by wasm-bindgen-test.

#![cfg(target_arch = "wasm32")]

use hearsay_proto::{Identity, Keypair, Message, NodeId, Tab};
use hearsay_web::components::messages::{MessageList, Props};
use hearsay_web::state::{Entry, Older};
use std::rc::Rc;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn entry(text: &str, mine: bool, stored: bool) -> Entry {
    let author = Keypair::from_secret([4; 32]);
    Entry {
        msg: Rc::new(Message::signed(
            &author,
            1,
            1_767_225_600_000,
            text.to_owned(),
        )),
        mine,
        stored_by: stored.then_some(NodeId::from_bytes([1; 16])),
        refused: None,
        archived: false,
    }
}

fn list(messages: Vec<Entry>) -> Props {
    Props {
        messages: Rc::new(messages),
        loaded: true,
        older: Older::Idle,
        on_older: Default::default(),
        on_top: Default::default(),
    }
}

async fn render(props: Props) -> web_sys::Element {
    let document = web_sys::window().unwrap().document().unwrap();
    let root = document.create_element("div").unwrap();
    document.body().unwrap().append_child(&root).unwrap();
    yew::Renderer::<MessageList>::with_root_and_props(root.clone(), props).render();
    // Let the scheduler render.
    gloo_timers::future::TimeoutFuture::new(20).await;
    root
}

#[wasm_bindgen_test]
async fn message_text_is_shown_as_text_never_as_html() {
    let root = render(list(vec![entry(
        "<img src=x onerror=alert(1)><b>bold</b>",
        false,
        false,
    )]))
    .await;
    let text = root.query_selector("li.message .text").unwrap().unwrap();
    assert_eq!(
        text.text_content().unwrap(),
        "<img src=x onerror=alert(1)><b>bold</b>"
    );
    assert!(root.query_selector("img").unwrap().is_none());
    assert!(root.query_selector("b").unwrap().is_none());
}

#[wasm_bindgen_test]
async fn own_messages_show_whether_a_node_has_them_or_held_them_back() {
    let root = render(list(vec![
        entry("stored one", true, true),
        entry("pending one", true, false),
        Entry {
            refused: Some("rate limited: try again in 200 ms".to_owned()),
            ..entry("held back", true, false)
        },
    ]))
    .await;
    let items = root.query_selector_all("li.message.mine").unwrap();
    assert_eq!(items.length(), 3);
    let held = root.query_selector("li.message .refused").unwrap().unwrap();
    assert_eq!(
        held.get_attribute("title").as_deref(),
        Some("rate limited: try again in 200 ms")
    );
    assert!(root.query_selector("li.message .stored").unwrap().is_some());
    assert!(
        root.query_selector("li.message .pending")
            .unwrap()
            .is_some()
    );
}

#[wasm_bindgen_test]
async fn an_empty_network_says_so() {
    let root = render(list(vec![])).await;
    assert!(root.text_content().unwrap().contains("No messages yet"));
}

#[wasm_bindgen_test]
async fn a_long_list_renders_only_the_rows_near_the_viewport() {
    let many = (0..5_000)
        .map(|i| entry(&format!("message {i}"), false, false))
        .collect();
    let root = render(list(many)).await;
    let rows = root.query_selector_all("li.message").unwrap().length();
    assert!((1..=200).contains(&rows), "{rows} rows rendered");
    assert_eq!(
        root.query_selector("#messages")
            .unwrap()
            .unwrap()
            .get_attribute("data-count")
            .as_deref(),
        Some("5000")
    );
}

#[wasm_bindgen_test]
fn the_clock_and_ids_come_from_the_browser() {
    let t = hearsay_web::net::now();
    assert!(t > 1_700_000_000_000, "Date.now() in ms: {t}");
    // The engine runs here as it does on a node.
    let mut engine = hearsay_proto::Engine::new(
        hearsay_proto::Config {
            kind: hearsay_proto::PeerKind::Browser,
            ..Default::default()
        },
        Identity::page(Keypair::from_secret([5; 32]), Tab::from_bytes([5; 16])),
        1,
        t,
    );
    let msg = engine.publish("in wasm", t).unwrap();
    assert!(
        msg.id_is_valid() && msg.signature_is_valid(),
        "signed in wasm"
    );
}
