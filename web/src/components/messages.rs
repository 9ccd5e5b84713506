//! The messages, newest first, windowed ([`crate::window`]): only the rows near the viewport
//! are in the DOM, between two spacers that stand for the rest. Text is always rendered as
//! text (yew escapes it), never HTML.
//!
//! The document scrolls (the map and the send box sit above the list), so the window follows
//! the window's `scroll` and `resize` events. Reaching the end of the list asks for older
//! messages (`on_older`, with the oldest the home holds as the cursor). While the reader is
//! scrolled into the list, new messages land above them without moving what they read, and a
//! button counts them; back at the top, what was fetched for scrolling back is let go
//! (`on_top`).

use super::clock_time;
use crate::state::{Entry, Older, order};
use crate::window::Rows;
use gloo_events::EventListener;
use hearsay_proto::MsgId;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use web_sys::{Element, HtmlElement};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub messages: Rc<Vec<Entry>>,
    /// The history has been fetched; the list is complete as of page load.
    pub loaded: bool,
    pub older: Older,
    /// The reader reached the end: fetch messages older than this one.
    pub on_older: Callback<MsgId>,
    /// The reader is back at the top of the list.
    pub on_top: Callback<()>,
}

/// Rows rendered beyond each edge of the viewport, in viewport heights: enough that a fast
/// scroll shows rows, not spacer, before the next frame.
const OVERSCAN: f64 = 1.0;

/// Rows rendered before the first measurement (the list's first paint).
const FIRST_ROWS: usize = 30;

type Key = Reverse<(u64, u64, MsgId)>;

/// What the window's listeners and the render share (the listeners outlive any one render).
#[derive(Default)]
struct Shared {
    /// The latest props' list.
    messages: Rc<Vec<Entry>>,
    loaded: bool,
    older: Older,
    /// Measured row heights, by message; cleared when the width changes (text re-wraps).
    heights: HashMap<MsgId, f64>,
    width: f64,
    /// The row the reader is looking at and where it was on screen, while scrolled into the
    /// list: if anything above it changes, the page scrolls by as much, so it stays put.
    anchor: Option<(MsgId, f64)>,
    /// The oldest message older ones were last asked for: asked once each.
    asked: Option<MsgId>,
    /// The newest message when the reader scrolled into the list; `None` at the top (the
    /// view shows it; this is the copy `follow` decides from, with the rest it reads).
    seen: Option<Key>,
    /// The two spacers' heights as last rendered. They are set through the DOM's style object
    /// after the render: the page's Content-Security-Policy refuses `style` attributes.
    spacers: (f64, f64),
}

/// The window's state as rendered.
#[derive(Clone, Copy, PartialEq, Default)]
struct View {
    start: usize,
    end: usize,
    /// The newest message when the reader scrolled into the list; `None` at the top.
    seen: Option<Key>,
}

#[function_component(MessageList)]
pub fn message_list(props: &Props) -> Html {
    let shared = use_mut_ref(Shared::default);
    let view = use_state_eq(|| View {
        start: 0,
        end: FIRST_ROWS,
        seen: None,
    });
    let list = use_node_ref();
    let above = use_node_ref();
    let below = use_node_ref();
    {
        let mut s = shared.borrow_mut();
        s.messages = Rc::clone(&props.messages);
        s.loaded = props.loaded;
        s.older = props.older.clone();
    }
    let update = {
        let (shared, view, list) = (shared.clone(), view.clone(), list.clone());
        let (on_older, on_top) = (props.on_older.clone(), props.on_top.clone());
        Rc::new(move || follow(&shared, &view, &list, &on_older, &on_top))
    };
    {
        let update = update.clone();
        use_effect_with((), move |_| {
            let window = gloo_utils::window();
            let on_scroll = {
                let update = update.clone();
                EventListener::new(&window, "scroll", move |_| update())
            };
            let on_resize = EventListener::new(&window, "resize", move |_| update());
            move || drop((on_scroll, on_resize))
        });
    }
    // After every render: measure what was rendered, keep the anchor still, follow.
    {
        let (shared, list, update) = (shared.clone(), list.clone(), update.clone());
        let (above, below) = (above.clone(), below.clone());
        use_effect(move || {
            let (top, bottom) = shared.borrow().spacers;
            for (spacer, px) in [(above, top), (below, bottom)] {
                if let Some(el) = spacer.cast::<HtmlElement>() {
                    let _ = el.style().set_property("height", &format!("{px}px"));
                }
            }
            measure(&shared, &list);
            update();
        });
    }
    // Mark the first complete render so load time can be measured from navigation.
    use_effect_with(props.loaded, |loaded| {
        if *loaded && let Some(p) = web_sys::window().and_then(|w| w.performance()) {
            let _ = p.mark("hearsay:messages-rendered");
        }
    });

    if props.loaded && props.messages.is_empty() {
        return html! { <p class="empty" id="messages">{ "No messages yet. Say hello!" }</p> };
    }
    let rows = rows_of(&shared.borrow(), &props.messages);
    let n = props.messages.len();
    let (start, end) = (view.start.min(n), view.end.min(n));
    shared.borrow_mut().spacers = (rows.top(start), rows.height() - rows.top(end));
    let fresh = view.seen.map_or(0, |seen| {
        props.messages.partition_point(|e| order(&e.msg) < seen)
    });
    let to_top = {
        let list = list.clone();
        Callback::from(move |_| {
            if let Some(el) = list.cast::<Element>() {
                el.scroll_into_view();
            }
        })
    };
    let retry = {
        let on_older = props.on_older.clone();
        let oldest = oldest_held(&props.messages);
        Callback::from(move |_| {
            if let Some(id) = oldest {
                on_older.emit(id);
            }
        })
    };
    html! {
        <div class="list" ref={list} id="messages" data-count={n.to_string()}>
            if fresh > 0 {
                <button class="fresh" onclick={to_top}>
                    { format!("↑ {fresh} new message{}", if fresh == 1 { "" } else { "s" }) }
                </button>
            }
            <div class="spacer" ref={above}></div>
            <ol class="messages" aria-label="Messages, newest first">
                { for props.messages[start..end].iter().map(row) }
            </ol>
            <div class="spacer" ref={below}></div>
            { match (&props.older, end == n) {
                (Older::Loading, _) => html! { <p class="older">{ "Loading older messages…" }</p> },
                (Older::Done(None), true) if props.loaded => html! { <p class="older">{ "The start of this node's history." }</p> },
                (Older::Done(Some(why)), true) => html! {
                    <p class="older">
                        { format!("Could not load older messages: {why}. ") }
                        <button onclick={retry}>{ "Try again" }</button>
                    </p>
                },
                _ => html! {},
            } }
        </div>
    }
}

fn row(e: &Entry) -> Html {
    let from = if e.mine {
        "you".to_owned()
    } else {
        match e.msg.author.key() {
            Some(key) => key.fingerprint(),
            None => "a seed node".to_owned(),
        }
    };
    let mark = match (e.mine, e.stored_by, &e.refused) {
        (true, Some(by), _) => {
            html! { <span class="stored" title={format!("stored by node {by}")}>{ "✓ stored" }</span> }
        }
        (true, None, Some(why)) => html! {
            <span class="refused" title={why.clone()}>{ "held back: too many at once; sent when the node takes it" }</span>
        },
        (true, None, None) => html! { <span class="pending">{ "sending…" }</span> },
        _ => html! {},
    };
    html! {
        <li key={e.msg.id.to_string()} class={classes!("message", e.mine.then_some("mine"))} data-id={e.msg.id.to_string()}>
            <div class="card">
                <p class="text">{ &e.msg.data }</p>
                <p class="meta">
                    <span class="from">{ from }</span>
                    { " · " }
                    <time>{ clock_time(e.msg.timestamp) }</time>
                    { " " }
                    { mark }
                </p>
            </div>
        </li>
    }
}

fn rows_of(s: &Shared, messages: &[Entry]) -> Rows {
    Rows::new(messages.iter().map(|e| s.heights.get(&e.msg.id).copied()))
}

/// The oldest message the home can page back from: not one of ours it never took.
fn oldest_held(messages: &[Entry]) -> Option<MsgId> {
    messages
        .iter()
        .rev()
        .find(|e| !e.mine || e.stored_by.is_some())
        .map(|e| e.msg.id)
}

/// The rendered rows, with the id each stands for.
fn rendered(list: &NodeRef) -> Vec<(MsgId, HtmlElement)> {
    let Some(root) = list.cast::<Element>() else {
        return Vec::new();
    };
    let Ok(items) = root.query_selector_all("li.message") else {
        return Vec::new();
    };
    (0..items.length())
        .filter_map(|i| items.item(i)?.dyn_into::<HtmlElement>().ok())
        .filter_map(|el| Some((el.get_attribute("data-id")?.parse().ok()?, el)))
        .collect()
}

/// Measures the rendered rows and puts the anchored row back where the reader saw it.
fn measure(shared: &RefCell<Shared>, list: &NodeRef) {
    let mut s = shared.borrow_mut();
    let mut anchor_now = None;
    for (id, el) in rendered(list) {
        // Fractional, as the layout has it: whole pixels would add up to a drift under the
        // reader as the spacers stand in for more rows.
        s.heights.insert(id, el.get_bounding_client_rect().height());
        if s.anchor.is_some_and(|(a, _)| a == id) {
            anchor_now = Some(el.get_bounding_client_rect().top());
        }
    }
    if let (Some((_, was)), Some(now)) = (s.anchor, anchor_now)
        && (now - was).abs() > 0.5
    {
        gloo_utils::window().scroll_by_with_x_and_y(0.0, now - was);
    }
}

/// Works out the window from where the list is on screen; records the anchor; asks for older
/// messages at the end and says when the reader is back at the top.
fn follow(
    shared: &RefCell<Shared>,
    view: &UseStateHandle<View>,
    list: &NodeRef,
    on_older: &Callback<MsgId>,
    on_top: &Callback<()>,
) {
    let Some(root) = list.cast::<Element>() else {
        return;
    };
    let window = gloo_utils::window();
    let height = window
        .inner_height()
        .ok()
        .and_then(|h| h.as_f64())
        .unwrap_or(800.0);
    let width = window
        .inner_width()
        .ok()
        .and_then(|w| w.as_f64())
        .unwrap_or(0.0);
    let mut s = shared.borrow_mut();
    if width != s.width {
        s.width = width;
        s.heights.clear();
    }
    // How far the list's top has scrolled above the viewport's.
    let into = -root.get_bounding_client_rect().top();
    let messages = Rc::clone(&s.messages);
    let rows = rows_of(&s, &messages);
    let (start, end) = rows.visible(into, into + height, OVERSCAN * height);
    // Past the newest row's first pixel (less than one is rounding).
    let away = into > 1.0;
    s.anchor = if away {
        rendered(list).into_iter().find_map(|(id, el)| {
            let r = el.get_bounding_client_rect();
            (r.bottom() > 0.0).then(|| (id, r.top()))
        })
    } else {
        None
    };
    let before = s.seen;
    let seen = match (away, before) {
        (false, _) => None,
        (true, Some(seen)) => Some(seen),
        (true, None) => messages.first().map(|e| order(&e.msg)),
    };
    s.seen = seen;
    if before.is_some() && seen.is_none() {
        s.asked = None;
        on_top.emit(());
    }
    // The last row is in the window: ask for what comes before it, once per cursor.
    if s.loaded && s.older == Older::Idle && end == rows.len() {
        let oldest = oldest_held(&messages);
        if oldest.is_some() && oldest != s.asked {
            s.asked = oldest;
            if let Some(id) = oldest {
                on_older.emit(id);
            }
        }
    }
    drop(s);
    view.set(View { start, end, seen });
}
