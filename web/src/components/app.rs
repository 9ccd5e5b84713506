//! The page: joins the network on mount and lays out the composer, the messages, the links
//! and the peers.

use super::composer::Composer;
use super::links::LinkList;
use super::map::NetworkMap;
use super::messages::MessageList;
use super::peers::PeerList;
use crate::net::{self, Network};
use crate::state::{Action, Phase, State};
use yew::prelude::*;

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(State::default);
    let network = use_state(|| None::<Network>);
    {
        let dispatcher = state.dispatcher();
        let network = network.clone();
        use_effect_with((), move |_| {
            let report = Callback::from(move |a: Action| dispatcher.dispatch(a));
            wasm_bindgen_futures::spawn_local(async move {
                match net::start(report.clone()).await {
                    Ok(n) => network.set(Some(n)),
                    Err(why) => report.emit(Action::Failed(why)),
                }
            });
        });
    }
    let on_send = {
        let network = network.clone();
        Callback::from(move |text: String| match &*network {
            Some(n) => n.publish(&text),
            None => Err("not connected yet".to_owned()),
        })
    };
    let open = state
        .links
        .iter()
        .filter(|l| l.state == hearsay_proto::LinkState::Open)
        .count();
    let banner = match &state.phase {
        Phase::Loading => html! { <p class="banner">{ "Joining the network…" }</p> },
        Phase::Failed(why) => {
            html! { <p class="banner error">{ format!("Could not join: {why}") }</p> }
        }
        Phase::Running if open == 0 => {
            html! { <p class="banner error">{ "Offline: no open links. Retrying…" }</p> }
        }
        Phase::Running => html! {},
    };
    html! {
        <div class="page">
            <header>
                <h1>{ "hearsay" }</h1>
                <p class="who">
                    { match state.key { Some(k) => format!("you are {}", k.fingerprint()), None => String::new() } }
                    { match state.home_key { Some(k) => format!(" · served by node {}", k.fingerprint()), None => String::new() } }
                    <span class="count">{ format!(" · {open} open link{}", if open == 1 { "" } else { "s" }) }</span>
                </p>
            </header>
            { banner }
            <main>
                                <section class="feed">
                    <NetworkMap records={state.topology.clone()} me={state.me} latest={state.latest} />
                    <Composer on_send={on_send} enabled={network.is_some()} />
                    <MessageList messages={state.messages.clone()} me={state.me} loaded={state.history_loaded} />
                </section>
                <aside>
                    <LinkList links={state.links.clone()} />
                    <PeerList peers={state.peers.clone()} />
                </aside>
            </main>
        </div>
    }
}
