//! Each address the page dials and how its link stands: connecting, open, or retrying and why;
//! and what the page has received and sent over its links (what it costs its reader).

use super::{clock_time, short};
use crate::state::Traffic;
use hearsay_proto::{LinkInfo, LinkState};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub links: Vec<LinkInfo>,
    pub traffic: Traffic,
}

/// `bytes` as a person reads them: `840 B`, `12.3 kB`, `4.1 MB`.
fn amount(bytes: u64) -> String {
    match bytes {
        b if b < 1_000 => format!("{b} B"),
        b if b < 1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{:.1} MB", b as f64 / 1e6),
    }
}

/// One line: received and sent so far, and the average received per second.
fn traffic_line(t: &Traffic) -> Html {
    let seconds = t.at.saturating_sub(t.since) / 1_000;
    let rate = match seconds {
        0 => String::new(),
        s => format!(" ({} B/s)", t.received / s),
    };
    html! {
        <p id="traffic" class="traffic" data-received={t.received.to_string()}
           data-sent={t.sent.to_string()} data-at={t.at.to_string()}>
            { format!("Received {}{rate}, sent {} over its links since this page joined.",
                      amount(t.received), amount(t.sent)) }
        </p>
    }
}

#[function_component(LinkList)]
pub fn link_list(props: &Props) -> Html {
    let shown: Vec<&LinkInfo> = props
        .links
        .iter()
        .filter(|l| l.state != LinkState::Idle || l.pinned)
        .collect();
    html! {
        <section class="links">
            <h2>{ "Links" }</h2>
            <ul id="links">
                { for shown.iter().map(|l| {
                    let (class, label) = match &l.state {
                        LinkState::Open => ("open", "open".to_owned()),
                        LinkState::Connecting => ("connecting", "connecting…".to_owned()),
                        LinkState::Retrying { at } => ("retrying", format!("retrying at {}", clock_time(*at))),
                        LinkState::Idle => ("idle", "idle".to_owned()),
                    };
                    html! {
                        <li class={classes!("link", class)} data-address={l.address.clone()}>
                            <span class="dot"></span>
                            <code>{ &l.address }</code>
                            if l.pinned { <span class="tag">{ "home" }</span> }
                            <span class="state">{ label }</span>
                            if l.state != LinkState::Open {
                                if let Some(why) = &l.last_error { <span class="why">{ why }</span> }
                            }
                            if let Some(n) = l.node { <span class="id">{ short(&n.to_string()) }</span> }
                        </li>
                    }
                }) }
            </ul>
            { traffic_line(&props.traffic) }
        </section>
    }
}
