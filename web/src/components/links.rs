//! Each address the page dials and how its link stands: connecting, open, or retrying and why.

use super::{clock_time, short};
use hearsay_proto::{LinkInfo, LinkState};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub links: Vec<LinkInfo>,
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
        </section>
    }
}
