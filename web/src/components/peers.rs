//! The peers this page is linked to: native nodes, browsers and seed (v1) nodes.

use super::short;
use hearsay_proto::{PeerInfo, PeerKind, Protocol};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub peers: Vec<PeerInfo>,
}

#[function_component(PeerList)]
pub fn peer_list(props: &Props) -> Html {
    html! {
        <section class="peers">
            <h2>{ format!("Peers ({})", props.peers.len()) }</h2>
            <ul id="peers">
                { for props.peers.iter().map(|p| {
                    let kind = match (p.protocol, p.kind) {
                        (Protocol::Seed, _) => "v1",
                        (Protocol::Pending, _) => "pending",
                        (_, Some(PeerKind::Browser)) => "browser",
                        _ => "node",
                    };
                    html! {
                        <li class={classes!("peer", kind)}>
                            <span class="tag">{ kind }</span>
                            <code>{ p.address.clone().unwrap_or_else(|| "(browser, no address)".to_owned()) }</code>
                            if let Some(id) = p.id { <span class="id">{ short(&id.to_string()) }</span> }
                        </li>
                    }
                }) }
            </ul>
        </section>
    }
}
