//! The messages, newest first. Text is always rendered as text (yew escapes it), never HTML.

use super::clock_time;
use crate::state::Entry;
use hearsay_proto::NodeId;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub messages: Vec<Entry>,
    pub me: Option<NodeId>,
    /// The history has been fetched; the list is complete as of page load.
    pub loaded: bool,
}

#[function_component(MessageList)]
pub fn message_list(props: &Props) -> Html {
    // Mark the first complete render so load time can be measured from navigation.
    use_effect_with(props.loaded, |loaded| {
        if *loaded && let Some(p) = web_sys::window().and_then(|w| w.performance()) {
            let _ = p.mark("hearsay:messages-rendered");
        }
    });
    if props.loaded && props.messages.is_empty() {
        return html! { <p class="empty" id="messages">{ "No messages yet. Say hello!" }</p> };
    }
    html! {
        <ol class="messages" id="messages">
            { for props.messages.iter().map(|e| {
                let from = if e.mine {
                    "you".to_owned()
                } else {
                    match e.msg.author.key() {
                        Some(key) => key.fingerprint(),
                        None => "a seed node".to_owned(),
                    }
                };
                let mark = match (e.mine, e.stored_by, &e.refused) {
                    (true, Some(by), _) => html! { <span class="stored" title={format!("stored by node {by}")}>{ "✓ stored" }</span> },
                    (true, None, Some(why)) => html! { <span class="refused" title={why.clone()}>{ "held back: too many at once; sent when the node takes it" }</span> },
                    (true, None, None) => html! { <span class="pending">{ "sending…" }</span> },
                    _ => html! {},
                };
                html! {
                    <li class={classes!("message", e.mine.then_some("mine"))} data-id={e.msg.id.to_string()}>
                        <p class="text">{ &e.msg.data }</p>
                        <p class="meta">
                            <span class="from">{ from }</span>
                            { " · " }
                            <time>{ clock_time(e.msg.timestamp) }</time>
                            { " " }
                            { mark }
                        </p>
                    </li>
                }
            }) }
        </ol>
    }
}
