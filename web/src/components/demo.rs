//! The demo's controls, shown only when the page's node is part of `hearsay demo`: kill a
//! tenth of the nodes and restart them, cut the network in two and heal it, add nodes,
//! publish a burst. Each asks the page's own node (`POST /api/demo/ACTION`, same origin
//! only); the map and the journey counter show the effect.

use crate::net;
use crate::state::DemoStatus;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub status: DemoStatus,
    /// The demo's status after a control.
    pub on_status: Callback<DemoStatus>,
}

#[function_component(DemoControls)]
pub fn demo_controls(props: &Props) -> Html {
    let busy = use_state(|| false);
    let said = use_state(|| None::<Result<String, String>>);
    let act = |action: &'static str, done: &'static str| {
        let (busy, said, on_status) = (busy.clone(), said.clone(), props.on_status.clone());
        Callback::from(move |_: MouseEvent| {
            busy.set(true);
            let (busy, said, on_status) = (busy.clone(), said.clone(), on_status.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match net::demo_control(action).await {
                    Ok(status) => {
                        said.set(Some(Ok(done.to_owned())));
                        on_status.emit(status);
                    }
                    Err(why) => said.set(Some(Err(why))),
                }
                busy.set(false);
            });
        })
    };
    let s = &props.status;
    let stopped = s.nodes.saturating_sub(s.live);
    html! {
        <section class="demo" aria-label="demo controls">
            <p class="demo-status" id="demo-status">
                <strong>{ "Demo" }</strong>
                { format!(": {} nodes, {} live{}{}", s.nodes, s.live,
                    if stopped > 0 { format!(", {stopped} stopped") } else { String::new() },
                    if s.split { " · cut in two" } else { "" }) }
            </p>
            <div class="demo-buttons">
                <button id="demo-kill" disabled={*busy} onclick={act("kill?share=10", "Stopped a tenth of the nodes.")}>{ "Kill 10%" }</button>
                <button id="demo-restart" disabled={*busy || stopped == 0} onclick={act("restart", "Restarted the stopped nodes.")}>{ "Restart them" }</button>
                if s.split {
                    <button id="demo-heal" disabled={*busy} onclick={act("heal", "Healed the cut.")}>{ "Heal the cut" }</button>
                } else {
                    <button id="demo-split" disabled={*busy} onclick={act("split", "Cut the network in two.")}>{ "Cut in two" }</button>
                }
                <button id="demo-add" disabled={*busy} onclick={act("add?count=10", "Added 10 nodes.")}>{ "Add 10 nodes" }</button>
                <button id="demo-burst" disabled={*busy} onclick={act("burst?count=100", "Published 100 messages.")}>{ "Burst of 100" }</button>
            </div>
            { match &*said {
                Some(Ok(done)) => html! { <p class="demo-said" role="status">{ done.clone() }</p> },
                Some(Err(why)) => html! { <p class="demo-said error" role="status">{ why.clone() }</p> },
                None => html! {},
            } }
        </section>
    }
}
