//! The counter beside a replayed journey: how many nodes the message had reached at the hop
//! the map shows, and how long after it set out the last of them took it. It ticks with the
//! map's lit marks (one hop every [`HOP_MS`]), re-rendering itself only.

use gloo_timers::callback::Interval;
use yew::prelude::*;

/// How long each hop of a journey takes to light up on the map, so a person can follow it.
pub const HOP_MS: u64 = 300;

#[derive(Properties, PartialEq)]
pub struct Props {
    /// By hop: nodes reached up to it, and the latest time among them (µs after the start).
    pub by_hop: Vec<(usize, u64)>,
    /// The demo's live nodes.
    pub total: usize,
}

#[function_component(ReplayCounter)]
pub fn replay_counter(props: &Props) -> Html {
    let hop = use_state(|| 0usize);
    {
        let (hop, hops) = (hop.clone(), props.by_hop.len());
        // Keyed on the journey by its parent: a new one mounts afresh and starts at hop 0.
        // The journey asked again may have more hops: the count goes on from where it is.
        use_effect_with(hops, move |&hops| {
            let mut at = *hop;
            let ticks = Interval::new(HOP_MS as u32, move || {
                if at + 1 < hops {
                    at += 1;
                    hop.set(at);
                }
            });
            move || drop(ticks)
        });
    }
    let (reached, last_us) = props
        .by_hop
        .get(*hop)
        .or(props.by_hop.last())
        .copied()
        .unwrap_or((0, 0));
    let done = *hop + 1 >= props.by_hop.len();
    html! {
        <p class="journey-note" id="journey-counter" aria-live="off">
            <strong>{ format!("reached {reached} of {}, last after {}", props.total, millis(last_us)) }</strong>
            { if done {
                " · the latest message as it happened, recorded by the demo"
            } else {
                " · replaying the latest message hop by hop, as it happened"
            } }
        </p>
    }
}

/// Microseconds as people read them: "84 ms", "1.2 ms", "2.3 s".
fn millis(us: u64) -> String {
    match us {
        0..10_000 => format!("{:.1} ms", us as f64 / 1_000.0),
        10_000..10_000_000 => format!("{} ms", us / 1_000),
        _ => format!("{:.1} s", us as f64 / 1_000_000.0),
    }
}
