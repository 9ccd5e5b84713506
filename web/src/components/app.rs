//! The page: joins the network on mount and lays out the composer, the messages, the links
//! and the peers.

use super::composer::Composer;
use super::demo::DemoControls;
use super::links::LinkList;
use super::map::NetworkMap;
use super::messages::MessageList;
use super::peers::PeerList;
use crate::net::{self, Network};
use crate::state::{Action, Phase, State};
use yew::prelude::*;

/// When a message's journey is asked for, in ms after the last ask: most of a demo has it
/// within a second; stragglers (by reconciliation) within seconds more.
const JOURNEY_ASKS: [u64; 3] = [1_000, 3_000, 10_000];

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
    // In a demo, the demo says so, and records each message's journey.
    {
        let dispatcher = state.dispatcher();
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                if let Ok(status) = net::demo_status().await {
                    dispatcher.dispatch(Action::Demo(status));
                }
            });
        });
    }
    // The latest message's journey, asked for once it has had time to spread (and once
    // more if some nodes had not taken it yet).
    {
        let dispatcher = state.dispatcher();
        let latest = state
            .latest
            .map(|(id, _)| id)
            .filter(|_| state.demo.is_some());
        use_effect_with(latest, move |latest| {
            if let Some(id) = *latest {
                wasm_bindgen_futures::spawn_local(async move {
                    for wait in JOURNEY_ASKS {
                        gloo_timers::future::sleep(std::time::Duration::from_millis(wait)).await;
                        let Ok(journey) = net::journey(id).await else {
                            return;
                        };
                        let whole = journey.reached.len() >= journey.nodes;
                        dispatcher.dispatch(Action::Journey(journey));
                        if whole {
                            return;
                        }
                    }
                });
            }
        });
    }
    let on_demo = {
        let dispatcher = state.dispatcher();
        Callback::from(move |status| dispatcher.dispatch(Action::Demo(status)))
    };
    let on_send = {
        let network = network.clone();
        Callback::from(move |text: String| match &*network {
            Some(n) => n.publish(&text),
            None => Err("not connected yet".to_owned()),
        })
    };
    // The reader scrolled to the end of the list: page back through the home's history.
    let on_older = {
        let dispatcher = state.dispatcher();
        Callback::from(move |before: hearsay_proto::MsgId| {
            dispatcher.dispatch(Action::OlderLoading);
            let dispatcher = dispatcher.clone();
            wasm_bindgen_futures::spawn_local(async move {
                dispatcher.dispatch(match net::older(before).await {
                    Ok((msgs, done)) => Action::Older { msgs, done },
                    Err(why) => Action::OlderFailed(why),
                });
            });
        })
    };
    let on_top = {
        let dispatcher = state.dispatcher();
        Callback::from(move |()| dispatcher.dispatch(Action::Trim))
    };
    let open = state
        .links
        .iter()
        .filter(|l| l.state == hearsay_proto::LinkState::Open)
        .count();
    // The connection in words, for everyone (and read out by screen readers as it changes).
    let connection = match &state.phase {
        Phase::Loading => "joining…".to_owned(),
        Phase::Failed(_) => "not connected".to_owned(),
        Phase::Running if open == 0 => "offline".to_owned(),
        Phase::Running => format!(
            "connected, {open} open link{}",
            if open == 1 { "" } else { "s" }
        ),
    };
    // The newest message that travelled here from someone else, read out as it arrives.
    let announce = state
        .latest
        .and_then(|(id, _)| state.messages.iter().take(50).find(|e| e.msg.id == id))
        .filter(|e| !e.mine)
        .map(|e| {
            let from = e
                .msg
                .author
                .key()
                .map_or("a seed node".to_owned(), |k| k.fingerprint());
            format!("New message from {from}: {}", e.msg.data)
        })
        .unwrap_or_default();
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
                    <span class="count" role="status">{ format!(" · {connection}") }</span>
                </p>
            </header>
            { banner }
            <div class="sr-only" aria-live="polite" aria-atomic="true">{ announce }</div>
            <main>
                <section class="feed">
                    if let Some(status) = state.demo.clone() {
                        <DemoControls {status} on_status={on_demo} />
                    }
                    <NetworkMap records={state.topology.clone()} me={state.me} root={state.root} latest={state.latest} journey={state.journey.clone()} />
                    <Composer on_send={on_send} enabled={network.is_some()} />
                    <MessageList messages={state.messages.clone()} loaded={state.history_loaded}
                                 older={state.older.clone()} {on_older} {on_top} />
                </section>
                <aside>
                    <LinkList links={state.links.clone()} traffic={state.traffic} />
                    <PeerList peers={state.peers.clone()} />
                </aside>
            </main>
        </div>
    }
}
