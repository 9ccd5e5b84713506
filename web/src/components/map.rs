//! The live map: every peer the network's records tell of, as a mark (node, browser, this
//! page; seed peers as small marks beside the node they hang off), their links as lines (the
//! broadcast tree's in bold, the others faint), laid out as the tree from its root (see
//! [`crate::layout`]); marks shrink as the network grows. The latest message lights up hop by
//! hop: as it happened where a demo recorded its journey (with a counter, see
//! [`super::replay`]), else along the tree from its origin, as the map predicts it (and
//! labelled so), each hop as two paths. Hover, focus or click a mark for its details; zoom
//! and pan by wheel, drag, pinch or keys (`+`, `-`, arrows, `0` for the whole map; a drag
//! moves the drawn map as a picture until it ends); find a peer by id or address.

use super::replay::{HOP_MS, ReplayCounter};
use super::short;
use crate::layout::layout;
use crate::view::View;
use hearsay_proto::journey::{Journey, Step, predict};
use hearsay_proto::map::TopoRecord;
use hearsay_proto::{MsgId, NodeId, PeerKind};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use wasm_bindgen::JsCast;
use web_sys::{Element, HtmlInputElement, SvgElement};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub records: Vec<TopoRecord>,
    pub me: Option<NodeId>,
    /// The broadcast tree's root, as this page follows it: the map is drawn from it.
    pub root: Option<NodeId>,
    /// The latest message that travelled to this page, and its origin.
    pub latest: Option<(MsgId, NodeId)>,
    /// Its journey as it happened, where a demo recorded it: replayed instead of predicted.
    pub journey: Option<Rc<Journey>>,
}

/// Peers past which the map draws its faint links as two paths (see the render).
const BULK_PAST: usize = 600;

#[function_component(NetworkMap)]
pub fn network_map(props: &Props) -> Html {
    let selected = use_state(|| None::<NodeId>);
    let hovered = use_state(|| None::<NodeId>);
    let query = use_state(String::new);
    // The view lives outside the render: zoom and pan set the element's viewBox (a drag, once
    // it ends) and nothing else.
    let view = use_mut_ref(View::default);
    let pointers = use_mut_ref(HashMap::<i32, (f64, f64)>::new);
    // Where a drag under way has moved the view to, shown as a transform until it ends.
    let dragged = use_mut_ref(|| None::<View>);
    let svg_ref = use_node_ref();

    // A peer no other record links to has left (its own record lingers for a grace):
    // leave it off the map. This page is always on it, and so is any page that names a node
    // (a node lists only some of its pages).
    let linked: BTreeSet<NodeId> = props
        .records
        .iter()
        .flat_map(|r| r.links.iter().copied().filter(move |l| *l != r.node))
        .collect();
    let nodes: BTreeSet<NodeId> = props
        .records
        .iter()
        .filter(|r| r.kind == PeerKind::Node)
        .map(|r| r.node)
        .collect();
    let shown: Vec<&TopoRecord> = props
        .records
        .iter()
        .filter(|r| {
            Some(r.node) == props.me
                || linked.contains(&r.node)
                || (r.kind == PeerKind::Browser && r.links.iter().any(|l| nodes.contains(l)))
        })
        .collect();
    let index: HashMap<NodeId, usize> =
        shown.iter().enumerate().map(|(i, r)| (r.node, i)).collect();
    let mut edges: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut tree: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (i, r) in shown.iter().enumerate() {
        for l in &r.links {
            if let Some(&j) = index.get(l) {
                edges.insert((i.min(j), i.max(j)));
            }
        }
        for l in &r.eager {
            if let Some(&j) = index.get(l) {
                tree.insert((i.min(j), i.max(j)));
            }
        }
    }
    edges.extend(tree.iter().copied());
    let edges: Vec<(usize, usize)> = edges.into_iter().collect();
    // As it happened if the demo recorded it; else as the map predicts it.
    let observed = props
        .journey
        .as_ref()
        .filter(|j| props.latest.map(|(id, _)| id) == Some(j.id));
    let steps: Vec<Step> = match (observed, props.latest) {
        (Some(j), _) => j.steps(),
        (None, Some((_, origin))) => predict(&props.records, origin),
        (None, None) => Vec::new(),
    };
    // A new message restarts the animation: keying the SVG on it remounts the lit marks
    // (and again when the recorded journey arrives: the replay starts then). Marks and links
    // are keyed by the peers they show, and the journey's paths by their hop, so a map that
    // changes meanwhile moves each element instead of handing it to another (whose animation
    // would start again: at 1,000 nodes the map changes every second).
    let spread_key = props
        .latest
        .map(|(id, _)| {
            format!(
                "{id}{}",
                if observed.is_some() {
                    "-as-it-happened"
                } else {
                    ""
                }
            )
        })
        .unwrap_or_default();
    // Each mark and link lights up when the message reaches it: the delays are set through
    // the style object after the render (the page's Content-Security-Policy refuses `style`
    // attributes).
    use_effect(|| {
        let marks = gloo_utils::document().query_selector_all("#map [data-delay]");
        if let Ok(marks) = marks {
            for i in 0..marks.length() {
                let Some(el) = marks.item(i).and_then(|n| n.dyn_into::<SvgElement>().ok()) else {
                    continue;
                };
                if let Some(ms) = el.get_attribute("data-delay") {
                    let _ = el
                        .style()
                        .set_property("animation-delay", &format!("{ms}ms"));
                }
            }
        }
    });
    let tree_edges: Vec<(usize, usize)> = tree.iter().copied().collect();
    let root = props.root.and_then(|r| index.get(&r).copied());
    let drawn = layout(shown.len(), &tree_edges, root);
    let pos = drawn.pos;
    // The tree as drawn: each peer's link to the parent it hangs from.
    let tree: BTreeSet<(usize, usize)> = drawn
        .parent
        .iter()
        .enumerate()
        .filter_map(|(v, p)| p.map(|p| (v.min(p), v.max(p))))
        .collect();
    // Marks shrink as the network grows, so hundreds fit (9 units across 50 peers or fewer).
    let mark = (9.0 * (50.0 / shown.len().max(1) as f64).sqrt()).clamp(3.0, 9.0);
    let journey = draw_journey(&steps, &index, &pos, |i| {
        if shown[i].kind == PeerKind::Node {
            mark
        } else {
            mark * 0.66
        }
    });

    // Found: peers whose id starts with the query, or whose address holds it.
    let needle = query.trim().to_lowercase();
    let found: BTreeSet<usize> = if needle.is_empty() {
        BTreeSet::new()
    } else {
        shown
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.node.to_string().starts_with(&needle)
                    || r.address.as_ref().is_some_and(|a| a.contains(&needle))
            })
            .map(|(i, _)| i)
            .collect()
    };
    let oninput = {
        let query = query.clone();
        Callback::from(move |e: InputEvent| {
            query.set(e.target_unchecked_into::<HtmlInputElement>().value());
        })
    };
    // The first peer found is selected and zoomed to, once, when the query changes.
    let first_found = found.iter().next().map(|&i| (shown[i].node, pos[i]));
    {
        let (selected, view, dragged, svg_ref) = (
            selected.clone(),
            view.clone(),
            dragged.clone(),
            svg_ref.clone(),
        );
        use_effect_with((*query).clone(), move |_| {
            if let Some((id, (x, y))) = first_found {
                selected.set(Some(id));
                settle(&svg_ref, &view, &dragged);
                set_view(&svg_ref, &view, View::around(x, y, mark * 24.0));
            }
        });
    }
    let onwheel = {
        let (view, dragged, svg_ref) = (view.clone(), dragged.clone(), svg_ref.clone());
        Callback::from(move |e: WheelEvent| {
            e.prevent_default();
            let Some((fx, fy)) = fraction(&svg_ref, e.client_x(), e.client_y()) else {
                return;
            };
            let v = settle(&svg_ref, &view, &dragged);
            let (px, py) = v.point(fx, fy);
            set_view(
                &svg_ref,
                &view,
                v.zoom_at(px, py, (-e.delta_y() * 0.0015).exp()),
            );
        })
    };
    let onpointerdown = {
        let (pointers, svg_ref) = (pointers.clone(), svg_ref.clone());
        Callback::from(move |e: PointerEvent| {
            if let Some(svg) = svg_ref.cast::<Element>() {
                let _ = svg.set_pointer_capture(e.pointer_id());
            }
            let at = (e.client_x() as f64, e.client_y() as f64);
            pointers.borrow_mut().insert(e.pointer_id(), at);
        })
    };
    // One pointer pans; two pinch (zoom about their midpoint by how their distance changed).
    // A pan moves the drawn map as a picture (a CSS transform the compositor applies without
    // drawing anything again) and sets the viewBox once, when the pointer lets go: a new
    // viewBox redraws every element, and at 500 peers that took more than a frame.
    let onpointermove = {
        let (pointers, view, dragged, svg_ref) = (
            pointers.clone(),
            view.clone(),
            dragged.clone(),
            svg_ref.clone(),
        );
        Callback::from(move |e: PointerEvent| {
            let at = (e.client_x() as f64, e.client_y() as f64);
            let mut down = pointers.borrow_mut();
            let Some(was) = down.get(&e.pointer_id()).copied() else {
                return;
            };
            let Some(svg) = svg_ref.cast::<SvgElement>() else {
                return;
            };
            let rect = svg.get_bounding_client_rect();
            if rect.width() <= 0.0 || rect.height() <= 0.0 {
                return;
            }
            down.insert(e.pointer_id(), at);
            let v = *view.borrow();
            if down.len() == 1 {
                let (dx, dy) = (at.0 - was.0, at.1 - was.1);
                let from = dragged.borrow().unwrap_or(v);
                let to = from.pan(-dx / rect.width() * v.w, -dy / rect.height() * v.h);
                *dragged.borrow_mut() = Some(to);
                let _ = svg.style().set_property(
                    "transform",
                    &format!(
                        "translate({:.1}px, {:.1}px)",
                        (v.x - to.x) / v.w * rect.width(),
                        (v.y - to.y) / v.h * rect.height()
                    ),
                );
                return;
            }
            drop(down);
            let v = settle(&svg_ref, &view, &dragged);
            let down = pointers.borrow();
            let other = down
                .iter()
                .find(|(id, _)| **id != e.pointer_id())
                .map(|(_, p)| *p)
                .unwrap_or(was);
            let apart = |a: (f64, f64)| ((a.0 - other.0).powi(2) + (a.1 - other.1).powi(2)).sqrt();
            let mid = ((at.0 + other.0) / 2.0, (at.1 + other.1) / 2.0);
            let (fx, fy) = (
                (mid.0 - rect.left()) / rect.width(),
                (mid.1 - rect.top()) / rect.height(),
            );
            let (px, py) = v.point(fx, fy);
            let moved = v.zoom_at(px, py, apart(at) / apart(was).max(1.0));
            if moved != v {
                set_view(&svg_ref, &view, moved);
            }
        })
    };
    let onpointerup = {
        let (pointers, view, dragged, svg_ref) = (
            pointers.clone(),
            view.clone(),
            dragged.clone(),
            svg_ref.clone(),
        );
        Callback::from(move |e: PointerEvent| {
            pointers.borrow_mut().remove(&e.pointer_id());
            settle(&svg_ref, &view, &dragged);
        })
    };
    let onkeydown_map = {
        let (view, dragged, svg_ref) = (view.clone(), dragged.clone(), svg_ref.clone());
        Callback::from(move |e: KeyboardEvent| {
            let v = settle(&svg_ref, &view, &dragged);
            let (cx, cy) = v.point(0.5, 0.5);
            let next = match e.key().as_str() {
                "+" | "=" => v.zoom_at(cx, cy, 1.5),
                "-" | "_" => v.zoom_at(cx, cy, 1.0 / 1.5),
                "ArrowLeft" => v.pan(-v.w / 8.0, 0.0),
                "ArrowRight" => v.pan(v.w / 8.0, 0.0),
                "ArrowUp" => v.pan(0.0, -v.h / 8.0),
                "ArrowDown" => v.pan(0.0, v.h / 8.0),
                "0" => View::default(),
                _ => return,
            };
            e.prevent_default();
            set_view(&svg_ref, &view, next);
        })
    };

    let details = (*hovered)
        .or(*selected)
        .and_then(|id| shown.iter().find(|r| r.node == id))
        .map(|r| {
        let kind = match r.kind {
            PeerKind::Node => "node",
            PeerKind::Browser => "browser",
        };
        html! {
            <p class="details" id="map-details" aria-live="polite">
                <strong>{ format!("{kind} {}", short(&r.node.to_string())) }</strong>
                { format!(" · {} · {} message{} · {} link{}, {} in the tree{}{}",
                    r.address.clone().unwrap_or_else(|| "no address (a browser)".to_owned()),
                    r.held, if r.held == 1 { "" } else { "s" },
                    r.links.len(), if r.links.len() == 1 { "" } else { "s" },
                    r.eager.len(),
                    if r.clients > 0 { format!(" · {} page{}", r.clients, if r.clients == 1 { "" } else { "s" }) } else { String::new() },
                    if r.seeds > 0 { format!(" · {} seed peer{}", r.seeds, if r.seeds == 1 { "" } else { "s" }) } else { String::new() }) }
            </p>
        }
    });

    let crowded = shown.len() > 100;
    // Past this many peers the faint links are drawn as two paths, not an element each (see
    // below): fewer elements, but one path is drawn whole however little of it is in view
    // (when a pan still redrew the map, that made a 500-peer pan 50 ms a frame, not 17).
    let bulky = shown.len() > BULK_PAST;
    let faint = |&(a, b): &(usize, usize)| !tree.contains(&(a, b));
    let bulk = |between_nodes: bool| {
        let mut d = String::new();
        for &(a, b) in edges.iter().filter(|e| faint(e)) {
            let nn = shown[a].kind == PeerKind::Node && shown[b].kind == PeerKind::Node;
            if nn == between_nodes {
                d.push_str(&format!(
                    "M{:.1} {:.1}L{:.1} {:.1}",
                    pos[a].0, pos[a].1, pos[b].0, pos[b].1
                ));
            }
        }
        d
    };
    html! {
        <section class="map">
            <div class="map-head">
                <h2>{ format!("Network ({} peer{})", shown.len(), if shown.len() == 1 { "" } else { "s" }) }</h2>
                <input id="map-find" type="search" placeholder="Find a peer: id or address" aria-label="find a peer on the map" value={(*query).clone()} {oninput} />
                if !needle.is_empty() {
                    <span class="found-count" aria-live="polite">{ format!("{} found", found.len()) }</span>
                }
            </div>
            // The frame clips the map where a drag moves it as a picture (see onpointermove).
            <div class="map-frame">
            <svg id="map" ref={svg_ref} key={spread_key.clone()} class={classes!(crowded.then_some("crowded"))} viewBox={view.borrow().attr()}
                 role="group" tabindex="0" aria-label="network map: + and - zoom, arrows pan, 0 shows all"
                 {onwheel} {onpointerdown} {onpointermove} onpointerup={onpointerup.clone()} onpointercancel={onpointerup} onkeydown={onkeydown_map}>
                // Past BULK_PAST peers, the faint links are two paths (node-node,
                // node-browser) rather than an element each: at 1,000 nodes that is 3,000
                // elements fewer.
                if bulky {
                    <path class="link nn faint" d={bulk(true)} />
                    <path class="link nb faint" d={bulk(false)} />
                }
                { for edges.iter().filter(|e| !bulky || !faint(e)).map(|&(a, b)| {
                    let both_nodes = shown[a].kind == PeerKind::Node && shown[b].kind == PeerKind::Node;
                    html! {
                        <line key={format!("{}-{}", shown[a].node, shown[b].node)} class={classes!("link", if both_nodes { "nn" } else { "nb" }, tree.contains(&(a, b)).then_some("tree"))}
                              x1={format!("{:.1}", pos[a].0)} y1={format!("{:.1}", pos[a].1)}
                              x2={format!("{:.1}", pos[b].0)} y2={format!("{:.1}", pos[b].1)} />
                    }
                }) }
                // The journey is drawn over the map, a path per hop for its links (here) and
                // one for its rings (over the marks, below): they stay in place while the map
                // beneath changes (a moved element would start its animation again, and at
                // hundreds of nodes the map changes every second).
                <g class="journey" aria-hidden="true">
                    { for journey.iter().enumerate().filter(|(_, h)| h.travelled > 0).map(|(hop, h)| html! {
                        <path key={format!("links-{hop}")} class="link lit" data-delay={(hop as u64 * HOP_MS).to_string()}
                              data-count={h.travelled.to_string()} d={h.links.clone()} />
                    }) }
                </g>
                { for shown.iter().enumerate().map(|(i, r)| {
                    let (x, y) = pos[i];
                    let kind = if Some(r.node) == props.me { "me" } else if r.kind == PeerKind::Browser { "browser" } else { "node" };
                    let id = r.node;
                    let onclick = {
                        let selected = selected.clone();
                        Callback::from(move |_| selected.set(Some(id)))
                    };
                    // Hover or focus shows a mark's details while it lasts.
                    let (onmouseenter, onfocus) = {
                        let (a, b) = (hovered.clone(), hovered.clone());
                        (Callback::from(move |_: MouseEvent| a.set(Some(id))), Callback::from(move |_: FocusEvent| b.set(Some(id))))
                    };
                    let (onmouseleave, onblur) = {
                        let (a, b) = (hovered.clone(), hovered.clone());
                        (Callback::from(move |_: MouseEvent| a.set(None)), Callback::from(move |_: FocusEvent| b.set(None)))
                    };
                    // Marks are focusable and open with Enter or Space, as buttons do.
                    let onkeydown = {
                        let selected = selected.clone();
                        Callback::from(move |e: KeyboardEvent| {
                            if e.key() == "Enter" || e.key() == " " {
                                e.prevent_default();
                                selected.set(Some(id));
                            }
                        })
                    };
                    let seeds = (0..r.seeds.min(6)).map(|s| {
                        let a = s as f64 * 0.9 - 0.4;
                        let (off, side) = (mark * 1.8, mark * 0.66);
                        html! { <rect class="mark v1" x={format!("{:.1}", x + off * a.cos() - side / 2.0)} y={format!("{:.1}", y + off * a.sin() - side / 2.0)} width={format!("{side:.1}")} height={format!("{side:.1}")} /> }
                    });
                    html! {
                    <g key={id.to_string()} class="peer-mark" {onclick} {onkeydown} {onmouseenter} {onmouseleave} {onfocus} {onblur} tabindex="0" role="button"
                           aria-label={format!("{kind} {}: details", short(&id.to_string()))}>
                            <circle class={classes!("mark", kind, (Some(id) == *selected).then_some("selected"), found.contains(&i).then_some("found"))}
                                    data-id={id.to_string()} cx={format!("{x:.1}")} cy={format!("{y:.1}")}
                                    r={format!("{:.1}", if r.kind == PeerKind::Node { mark } else { mark * 0.66 })}>
                                <title>{ format!("{} {}", kind, short(&id.to_string())) }</title>
                            </circle>
                            { for seeds }
                        </g>
                    }
                }) }
                <g class="journey" aria-hidden="true">
                    { for journey.iter().enumerate().filter(|(_, h)| h.reached > 0).map(|(hop, h)| html! {
                        <path key={format!("rings-{hop}")} class="ring lit" data-delay={(hop as u64 * HOP_MS).to_string()}
                              data-count={h.reached.to_string()} d={h.rings.clone()} />
                    }) }
                </g>
            </svg>
            </div>
            <p class="legend">
                <span class="key node"></span>{ "node " }
                <span class="key browser"></span>{ "browser " }
                <span class="key me"></span>{ "this page " }
                <span class="key v1"></span>{ "seed (v1) peer " }
                <span class="key tree"></span>{ "broadcast tree" }
            </p>
            if let Some(j) = observed {
                <ReplayCounter key={spread_key.clone()} by_hop={by_hop(j, &steps)} total={j.nodes} />
            } else if steps.len() > 1 {
                // What the page can know of a journey: the way the records' tree links lead
                // from its origin. Nobody reports the way it went, so it says so.
                <p class="journey-note" id="journey-note">
                    { format!("The latest message, lit along the broadcast tree as the map describes it: {} of {} peers, {} hop{} from its origin (predicted from the map, not observed).",
                        steps.len(), shown.len(),
                        steps.iter().map(|s| s.hop).max().unwrap_or(0),
                        if steps.iter().map(|s| s.hop).max() == Some(1) { "" } else { "s" }) }
                </p>
            }
            { details.unwrap_or_default() }
        </section>
    }
}

/// One hop of a journey as drawn: the links it travelled and rings around the peers it
/// reached, each as one path, lit together when the message got there. A journey across
/// 1,000 nodes is then tens of elements rather than 2,000 (the page's bound is 5,000).
#[derive(Default)]
struct Hop {
    links: String,
    travelled: usize,
    rings: String,
    reached: usize,
}

/// The journey's steps, hop by hop, at the map's positions (`radius` of the mark at each).
fn draw_journey(
    steps: &[Step],
    index: &HashMap<NodeId, usize>,
    pos: &[(f64, f64)],
    radius: impl Fn(usize) -> f64,
) -> Vec<Hop> {
    let mut hops: Vec<Hop> = Vec::new();
    for s in steps {
        let Some(&b) = index.get(&s.node) else {
            continue;
        };
        let hop = s.hop as usize;
        if hops.len() <= hop {
            hops.resize_with(hop + 1, Hop::default);
        }
        let h = &mut hops[hop];
        let ((x, y), r) = (pos[b], radius(b));
        // A circle as two half arcs.
        h.rings.push_str(&format!(
            "M{:.1} {y:.1}a{r:.1} {r:.1} 0 1 0 {:.1} 0a{r:.1} {r:.1} 0 1 0 {:.1} 0",
            x - r,
            2.0 * r,
            -2.0 * r
        ));
        h.reached += 1;
        if let Some(&a) = s.from.as_ref().and_then(|f| index.get(f)) {
            h.links
                .push_str(&format!("M{:.1} {:.1}L{x:.1} {y:.1}", pos[a].0, pos[a].1));
            h.travelled += 1;
        }
    }
    hops
}

/// For a replay's counter: at each hop, how many of the journal's nodes the message had
/// reached, and the latest time among them.
fn by_hop(journey: &Journey, steps: &[Step]) -> Vec<(usize, u64)> {
    let recorded: BTreeSet<NodeId> = journey.reached.iter().map(|r| r.node).collect();
    let hops = steps
        .iter()
        .map(|s| s.hop)
        .max()
        .map_or(0, |h| h as usize + 1);
    let mut out = vec![(0usize, 0u64); hops];
    for s in steps.iter().filter(|s| recorded.contains(&s.node)) {
        let at = &mut out[s.hop as usize];
        at.0 += 1;
        at.1 = at.1.max(s.after_us.unwrap_or(0));
    }
    for h in 1..hops {
        out[h] = (out[h].0 + out[h - 1].0, out[h].1.max(out[h - 1].1));
    }
    out
}

/// Where a pointer at `(x, y)` (client pixels) is over the map, as fractions of its size.
fn fraction(svg: &NodeRef, x: i32, y: i32) -> Option<(f64, f64)> {
    let rect = svg.cast::<Element>()?.get_bounding_client_rect();
    (rect.width() > 0.0 && rect.height() > 0.0).then(|| {
        (
            (x as f64 - rect.left()) / rect.width(),
            (y as f64 - rect.top()) / rect.height(),
        )
    })
}

/// Ends a drag, if one is under way: the view it moved to is set as the viewBox, in the same
/// task as its transform is removed, so the map never shows both. Returns the view.
fn settle(
    svg: &NodeRef,
    view: &std::rc::Rc<std::cell::RefCell<View>>,
    dragged: &std::rc::Rc<std::cell::RefCell<Option<View>>>,
) -> View {
    let Some(to) = dragged.borrow_mut().take() else {
        return *view.borrow();
    };
    set_view(svg, view, to);
    if let Some(svg) = svg.cast::<SvgElement>() {
        let _ = svg.style().remove_property("transform");
    }
    to
}

/// Shows `v`: remembered for the next render, and set on the element at once.
fn set_view(svg: &NodeRef, view: &std::rc::Rc<std::cell::RefCell<View>>, v: View) {
    *view.borrow_mut() = v;
    if let Some(svg) = svg.cast::<Element>() {
        let _ = svg.set_attribute("viewBox", &v.attr());
    }
}
