//! The engine's behaviour at one node, driven by hand: handshakes, seed detection, self and
//! duplicate links, keepalive, backoff, transient links, timers, and what goes to v1 peers.

use hearsay_proto::broadcast::Message as B;
use hearsay_proto::handshake::Message as H;
use hearsay_proto::identity::{Role, handshake_proof};
use hearsay_proto::keepalive::Message as K;
use hearsay_proto::membership::Message as M;
use hearsay_proto::seed::Message as S;
use hearsay_proto::wire::{Hello, PROTOCOL_VERSION};
use hearsay_proto::{
    CloseReason, Config, ConnId, Engine, Frame, Identity, Keypair, Message, MsgId, NodeId, Nonce,
    Output, PeerKind, Protocol, Tab,
};

const T0: u64 = 1_000_000;
const ME: &str = "ws://me:3000";

/// Node `n`'s key, and its id (which derives from the key).
fn key(n: u8) -> Keypair {
    Keypair::from_secret([n; 32])
}

fn node(n: u8) -> NodeId {
    key(n).public().node_id()
}

fn identity(n: u8) -> Identity {
    Identity::node(key(n))
}

/// A page's identity: key `n`, in tab `n`.
fn page_identity(n: u8) -> Identity {
    Identity::page(key(n), Tab::from_bytes([n; 16]))
}

fn engine(id: u8) -> Engine {
    let config = Config {
        listen_addresses: vec![ME.into(), "ws://me:3001".into()],
        ..Config::default()
    };
    Engine::new(config, identity(id), 1, T0)
}

fn drain(e: &mut Engine) -> Vec<Output> {
    std::iter::from_fn(|| e.poll_output()).collect()
}

fn sent_to(outputs: &[Output], conn: ConnId) -> Vec<Frame> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { conn: c, frame } if *c == conn => Some(Frame::decode(frame).unwrap()),
            _ => None,
        })
        .collect()
}

fn closed(outputs: &[Output], conn: ConnId) -> Option<CloseReason> {
    outputs.iter().find_map(|o| match o {
        Output::Close { conn: c, reason } if *c == conn => Some(reason.clone()),
        _ => None,
    })
}

fn hello(id: u8, addresses: &[&str]) -> String {
    hello_v(id, addresses, PROTOCOL_VERSION)
}

fn hello_v(id: u8, addresses: &[&str], version: u32) -> String {
    Frame::Handshake(H::Hello(Hello {
        protocol: "hearsay".into(),
        version,
        id: node(id),
        key: Some(key(id).public()),
        tab: None,
        nonce: Some(Nonce::from_bytes([id; 16])),
        proof: None,
        run: Some(Nonce::from_bytes([id; 16])),
        kind: PeerKind::Node,
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
        home: None,
        root: None,
        term: None,
    }))
    .encode()
}

/// The nonce in the `HELLO` the engine sent on `conn`, among `outputs`.
fn nonce_of(outputs: &[Output], conn: ConnId) -> Option<Nonce> {
    sent_to(outputs, conn).into_iter().find_map(|f| match f {
        Frame::Handshake(H::Hello(h)) => h.nonce,
        _ => None,
    })
}

/// Peer `id` dials `e` on inbound `c`: says hello, reads `e`'s answer and proves it holds
/// its key. Returns everything `e` said meanwhile.
fn greet(e: &mut Engine, c: ConnId, id: u8, addresses: &[&str], now: u64) -> Vec<Output> {
    greet_with(e, c, id, &hello(id, addresses), now)
}

/// [`greet`] with a `HELLO` of the test's making.
fn greet_with(e: &mut Engine, c: ConnId, id: u8, hello: &str, now: u64) -> Vec<Output> {
    e.frame(c, hello, now);
    let mut out = drain(e);
    if let Some(nonce) = nonce_of(&out, c) {
        let sig = key(id).sign(&handshake_proof(Role::Dialer, &nonce, e.id()));
        e.frame(c, &Frame::Handshake(H::Proof { sig }).encode(), now);
        out.extend(drain(e));
    }
    out
}

/// Peer `id` accepts `e`'s dial on `conn` and answers the `HELLO` `e` sent (in `sent`) with
/// its own, proving it holds its key.
fn answer(e: &mut Engine, conn: ConnId, id: u8, addresses: &[&str], sent: &[Output], now: u64) {
    let nonce = nonce_of(sent, conn).expect("the dialer's HELLO");
    let mut frame = Frame::decode(&hello(id, addresses)).unwrap();
    if let Frame::Handshake(H::Hello(h)) = &mut frame {
        h.proof = Some(key(id).sign(&handshake_proof(Role::Acceptor, &nonce, e.id())));
    }
    e.frame(conn, &frame.encode(), now);
}

fn dial_of(outputs: &[Output]) -> Vec<(ConnId, String)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Dial { conn, address } => Some((*conn, address.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_dialer_says_hello_first_and_the_acceptor_answers() {
    let mut a = engine(1);
    a.add_peer("ws://b:3000/ws", T0).unwrap();
    let dials = dial_of(&drain(&mut a));
    assert_eq!(dials.len(), 1);
    let (conn, address) = dials[0].clone();
    assert_eq!(address, "ws://b:3000", "dialed by its canonical address");
    a.opened(conn, T0 + 5);
    assert!(
        matches!(&sent_to(&drain(&mut a), conn)[..], [Frame::Handshake(H::Hello(h))] if h.id == node(1))
    );

    let mut b = engine(2);
    let inbound = b.accepted(T0);
    assert!(
        drain(&mut b).is_empty(),
        "an acceptor waits for the first frame"
    );
    let out = sent_to(
        &greet(&mut b, inbound, 1, &["ws://a:3000"], T0 + 10),
        inbound,
    );
    assert!(matches!(&out[0], Frame::Handshake(H::Hello(h)) if h.id == node(2)));
    assert_eq!(
        out[1],
        Frame::Membership(M::Join),
        "alone, it joins through whoever it meets"
    );
    let peers = b.peers();
    assert_eq!(peers[0].protocol, Protocol::Hearsay);
    assert_eq!(
        peers[0].address.as_deref(),
        Some("ws://a:3000"),
        "learned from the handshake"
    );
}

/// A hearsay node that joined `e` through an inbound link, so it is a neighbour.
fn join(e: &mut Engine, id: u8, addresses: &[&str], now: u64) -> ConnId {
    let c = e.accepted(now);
    greet(e, c, id, addresses, now);
    e.frame(c, &Frame::Membership(M::Join).encode(), now);
    c
}

#[test]
fn a_peer_of_another_version_is_closed_with_both_versions_named() {
    let mut e = engine(1);
    let c = e.accepted(T0);
    e.frame(c, &hello_v(2, &["ws://b:3000"], 2), T0);
    let reason = closed(&drain(&mut e), c).unwrap();
    assert_eq!(
        reason,
        CloseReason::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: 2
        }
    );
    let text = reason.to_string();
    assert!(
        text.contains("v2") && text.contains(&format!("v{PROTOCOL_VERSION}")),
        "{text}"
    );
}

#[test]
fn the_next_deadline_is_a_real_one_not_a_tick() {
    let mut e = engine(1);
    // Nothing is due for seconds on a node with no links.
    assert!(e.poll_timeout().unwrap() >= T0 + 1_000);
    // Woken only when one of its parts has something due: an idle node with no links keeps
    // a few slow timers (its own beacons, its map record, eviction), never a tick.
    let mut now = T0;
    let mut wakeups = 0;
    while let Some(at) = e.poll_timeout().filter(|&at| at < T0 + 60_000) {
        assert!(at > now, "a deadline handled is not due again");
        now = at;
        e.handle_timeout(now);
        drain(&mut e);
        wakeups += 1;
    }
    assert!(wakeups <= 30, "{wakeups} wakeups in an idle minute");
}

#[test]
fn a_node_that_is_not_a_neighbour_is_let_go_once_idle() {
    let mut e = engine(1);
    let b = join(&mut e, 2, &["ws://b:3000"], T0);
    // b tells e of d, so e is not stranded (a node that knows no one to repair from joins
    // through whoever reaches it).
    let shuffle = Frame::Membership(M::Shuffle {
        origin: hearsay_proto::PeerRecord {
            id: node(2),
            address: "ws://b:3000".into(),
            aliases: vec![],
        },
        peers: vec![hearsay_proto::PeerRecord {
            id: node(4),
            address: "ws://d:3000".into(),
            aliases: vec![],
        }],
        ttl: 0,
    });
    e.frame(b, &shuffle.encode(), T0);
    // c connects and says hello, but asks for nothing (a shuffle reply's carrier, say).
    let c = e.accepted(T0);
    greet(&mut e, c, 3, &["ws://c:3000"], T0);
    e.handle_timeout(T0 + 4_000);
    assert!(closed(&drain(&mut e), c).is_none());
    e.handle_timeout(T0 + 5_000);
    let out = drain(&mut e);
    assert_eq!(closed(&out, c), Some(CloseReason::NotANeighbour));
    assert!(closed(&out, b).is_none(), "a neighbour stays");
}

/// Silence never makes a seed: a seed speaks first. A connection that says nothing is closed
/// at the handshake's deadline, saying why; one that says `HELLO` late, as a busy page or a
/// phone on a slow link may, is a peer like any other.
#[test]
fn a_silent_connection_is_closed_not_taken_for_a_seed_and_a_late_hello_is_welcome() {
    let mut e = engine(1);
    let silent = e.accepted(T0);
    let late = e.accepted(T0);
    drain(&mut e);
    e.handle_timeout(T0 + 3_000);
    greet(&mut e, late, 2, &["ws://b:3000"], T0 + 3_000);
    e.handle_timeout(T0 + 9_900);
    assert!(closed(&drain(&mut e), silent).is_none());
    assert_eq!(
        e.peers()
            .iter()
            .find(|p| p.conn == silent)
            .unwrap()
            .protocol,
        Protocol::Pending
    );
    e.handle_timeout(T0 + 10_000);
    let out = drain(&mut e);
    assert_eq!(closed(&out, silent), Some(CloseReason::HandshakeTimeout));
    assert!(closed(&out, late).is_none());
    assert_eq!(
        e.peers().iter().find(|p| p.conn == late).unwrap().protocol,
        Protocol::Hearsay
    );
}

/// How a seed's link is answered, by what it says it has dialed: one that names us holds a
/// link to us already and is closed; one that reached another hearsay node is told nothing
/// (that node names the mesh to it); the first hearsay node it reaches names every node.
#[test]
fn a_seed_is_named_the_mesh_by_the_first_node_it_reached_only_and_never_linked_twice() {
    let mut e = engine(1);
    join(&mut e, 2, &["ws://b:3000", "ws://b:3001"], T0);
    join(&mut e, 3, &["ws://c:3000"], T0);
    drain(&mut e);
    let sockets = |addresses: &[&str]| {
        Frame::Seed(S::Sockets {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
        })
        .encode()
    };
    let twice = e.accepted(T0);
    e.frame(twice, &sockets(&["ws://me:3001", "ws://b:3001"]), T0 + 1);
    assert_eq!(
        closed(&drain(&mut e), twice),
        Some(CloseReason::SeedLinkedTwice)
    );
    let later = e.accepted(T0);
    e.frame(later, &sockets(&["ws://b:3001"]), T0 + 1);
    let first = e.accepted(T0);
    e.frame(first, &sockets(&[]), T0 + 1);
    assert!(
        drain(&mut e).is_empty(),
        "nothing before the seed's dials settle"
    );
    e.handle_timeout(T0 + 1 + hearsay_proto::seed::SEED_SETTLE);
    let out = drain(&mut e);
    assert_eq!(
        sent_to(&out, later),
        vec![Frame::Seed(S::Sockets { addresses: vec![] })]
    );
    assert_eq!(
        sent_to(&out, first),
        vec![Frame::Seed(S::Sockets {
            addresses: vec!["ws://b:3000".into(), "ws://c:3000".into()]
        })]
    );
}

#[test]
fn a_dialed_seed_is_introduced_to_us_and_hung_up_on() {
    let mut e = engine(1);
    e.add_peer("ws://seed:6001", T0).unwrap();
    let (conn, _) = dial_of(&drain(&mut e))[0].clone();
    e.opened(conn, T0);
    drain(&mut e);
    e.frame(
        conn,
        &Frame::Seed(S::Sockets { addresses: vec![] }).encode(),
        T0 + 1,
    );
    let out = drain(&mut e);
    assert_eq!(
        sent_to(&out, conn),
        vec![Frame::Seed(S::Sockets {
            addresses: vec![ME.into()]
        })]
    );
    assert!(closed(&out, conn).is_some());
    // Revisited (it may restart and forget us), but not before the revisit interval.
    e.handle_timeout(T0 + 29_000);
    assert!(dial_of(&drain(&mut e)).is_empty());
    e.handle_timeout(T0 + 31_500);
    assert_eq!(dial_of(&drain(&mut e)).len(), 1);
}

#[test]
fn dialing_ourselves_is_refused_or_detected() {
    let mut e = engine(1);
    assert!(e.add_peer("ws://me:3000/", T0).is_err());
    // An alias we cannot recognise by name is found out by the handshake.
    e.add_peer("ws://localhost:3000", T0).unwrap();
    let (conn, _) = dial_of(&drain(&mut e))[0].clone();
    e.opened(conn, T0);
    drain(&mut e);
    e.frame(conn, &hello(1, &[ME]), T0 + 1);
    assert_eq!(
        closed(&drain(&mut e), conn),
        Some(CloseReason::ConnectedToSelf)
    );
    e.handle_timeout(T0 + 60_000);
    assert!(dial_of(&drain(&mut e)).is_empty(), "never dialed again");
}

#[test]
fn crossing_dials_keep_the_link_dialed_by_the_lower_id() {
    // We are node 5. Another node dials us while we dial it: one with a higher id, then
    // one with a lower (ids derive from keys, so which is which is looked up).
    let higher = (1..=20u8).find(|&n| n != 5 && node(n) > node(5)).unwrap();
    let lower = (1..=20u8).find(|&n| n != 5 && node(n) < node(5)).unwrap();
    for (them, keep_outbound) in [(higher, true), (lower, false)] {
        let mut e = engine(5);
        e.add_peer("ws://x:3000", T0).unwrap();
        let (out_conn, _) = dial_of(&drain(&mut e))[0].clone();
        e.opened(out_conn, T0);
        let sent = drain(&mut e);
        let in_conn = e.accepted(T0);
        let mut out = greet(&mut e, in_conn, them, &["ws://x:3000"], T0 + 1);
        answer(&mut e, out_conn, them, &["ws://x:3000"], &sent, T0 + 2);
        out.extend(drain(&mut e));
        let (dropped, kept) = if keep_outbound {
            (in_conn, out_conn)
        } else {
            (out_conn, in_conn)
        };
        assert_eq!(
            closed(&out, dropped),
            Some(CloseReason::DuplicateConnection),
            "them={them}"
        );
        assert!(closed(&out, kept).is_none());
        assert_eq!(e.peers().len(), 1);
    }
}

/// Two nodes that dial each other at once each keep the lower id's dial. Where the other
/// closes ours as a duplicate before its own dial has finished its handshake here, the node
/// stays linked over that one: before, membership was told it left, and the node it had
/// just taken as a neighbour kept us as one (views went asymmetric, found by the
/// simulation's property test once nodes dialed each other to time links).
#[test]
fn a_link_closed_as_a_duplicate_of_one_still_in_its_handshake_stays_linked() {
    let lower = (1..=20u8).find(|&n| n != 5 && node(n) < node(5)).unwrap();
    let mut e = engine(5);
    e.add_peer("ws://x:3000", T0).unwrap();
    let (out_conn, _) = dial_of(&drain(&mut e))[0].clone();
    e.opened(out_conn, T0);
    let sent = drain(&mut e);
    answer(&mut e, out_conn, lower, &["ws://x:3000"], &sent, T0 + 1);
    drain(&mut e);
    let agree = r#"{"type":"NEIGHBOR","high":true}"#;
    e.frame(out_conn, agree, T0 + 2);
    drain(&mut e);
    assert_eq!(e.neighbors(), vec![node(lower)]);
    // Its own dial comes in; we answer its HELLO, and before its proof comes it closes ours.
    let in_conn = e.accepted(T0 + 3);
    e.frame(in_conn, &hello(lower, &["ws://x:3000"]), T0 + 3);
    let out = drain(&mut e);
    let nonce = nonce_of(&out, in_conn).expect("our answer");
    let duplicate = CloseReason::DuplicateConnection.to_string();
    e.closed(out_conn, Some(&duplicate), T0 + 4);
    drain(&mut e);
    assert_eq!(
        e.neighbors(),
        vec![node(lower)],
        "still a neighbour meanwhile"
    );
    let sig = key(lower).sign(&handshake_proof(Role::Dialer, &nonce, e.id()));
    e.frame(
        in_conn,
        &Frame::Handshake(H::Proof { sig }).encode(),
        T0 + 5,
    );
    drain(&mut e);
    assert_eq!(e.neighbors(), vec![node(lower)], "linked over its dial");
    assert_eq!(e.peers().len(), 1);
    // Had its dial failed its handshake instead, the node would be gone then.
    let mut e2 = engine(5);
    e2.add_peer("ws://x:3000", T0).unwrap();
    let (out_conn, _) = dial_of(&drain(&mut e2))[0].clone();
    e2.opened(out_conn, T0);
    let sent = drain(&mut e2);
    answer(&mut e2, out_conn, lower, &["ws://x:3000"], &sent, T0 + 1);
    e2.frame(out_conn, agree, T0 + 2);
    let in_conn = e2.accepted(T0 + 3);
    e2.frame(in_conn, &hello(lower, &["ws://x:3000"]), T0 + 3);
    e2.closed(out_conn, Some(&duplicate), T0 + 4);
    e2.closed(in_conn, None, T0 + 5);
    drain(&mut e2);
    assert!(e2.neighbors().is_empty());
}

#[test]
fn idle_peers_are_pinged_and_dead_ones_dropped() {
    let mut e = engine(1);
    let b = join(&mut e, 2, &["ws://b:3000"], T0);
    drain(&mut e);
    e.handle_timeout(T0 + 10_000);
    let mut out = sent_to(&drain(&mut e), b);
    out.retain(|f| matches!(f, Frame::Keepalive(K::Ping { .. })));
    let nonce = match out.as_slice() {
        [Frame::Keepalive(K::Ping { nonce })] => *nonce,
        other => panic!("expected one PING, got {other:?}"),
    };
    e.frame(
        b,
        &Frame::Keepalive(K::Pong { nonce }).encode(),
        T0 + 10_050,
    );
    e.handle_timeout(T0 + 30_000);
    let out = drain(&mut e);
    assert!(closed(&out, b).is_none(), "a pong keeps it alive");
    assert!(
        sent_to(&out, b)
            .iter()
            .any(|f| matches!(f, Frame::Keepalive(K::Ping { .. }))),
        "pinged again"
    );
    // No answer this time: dropped 30 s after it was last heard.
    e.handle_timeout(T0 + 40_000);
    assert!(closed(&drain(&mut e), b).is_none());
    e.handle_timeout(T0 + 40_300);
    assert_eq!(
        closed(&drain(&mut e), b),
        Some(CloseReason::KeepaliveTimeout)
    );
}

#[test]
fn failed_dials_back_off_exponentially_with_a_cap() {
    let mut e = engine(1);
    e.add_peer("ws://gone:3000", T0).unwrap();
    let mut now = T0;
    let mut attempts = vec![now];
    let (mut conn, _) = dial_of(&drain(&mut e))[0].clone();
    while attempts.len() < 10 {
        e.dial_failed(conn, "refused", now);
        loop {
            now += 50;
            e.handle_timeout(now);
            if let Some((c, _)) = dial_of(&drain(&mut e)).first() {
                conn = *c;
                attempts.push(now);
                break;
            }
        }
    }
    let gaps: Vec<u64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= 500 && gaps[0] < 1_000, "{gaps:?}");
    assert!(gaps[2] >= 2 * gaps[0] - 300, "grows: {gaps:?}");
    assert!(
        gaps.iter().all(|&g| g <= 12_600),
        "capped at 10 s + 25% jitter: {gaps:?}"
    );
    assert!(gaps[8] >= 10_000, "reaches the cap: {gaps:?}");
}

#[test]
fn seed_text_collapses_to_one_message_and_is_never_echoed_to_seeds() {
    let mut e = engine(1);
    let node_b = join(&mut e, 2, &["ws://b:3000"], T0);
    let s1 = e.accepted(T0);
    let s2 = e.accepted(T0);
    drain(&mut e);
    let msg = Frame::Seed(S::Text {
        data: "from a seed".into(),
    })
    .encode();
    e.frame(s1, &msg, T0 + 1);
    e.frame(s2, &msg, T0 + 2);
    let out = drain(&mut e);
    let delivered: Vec<_> = out
        .iter()
        .filter(|o| matches!(o, Output::Deliver { .. }))
        .collect();
    assert_eq!(delivered.len(), 1);
    assert!(
        matches!(delivered[0], Output::Deliver { msg: m, .. } if m.id == MsgId::v1("from a seed") && m.author.is_seed())
    );
    let gossip = |frames: Vec<Frame>| -> Vec<Frame> {
        frames
            .into_iter()
            .filter(|f| matches!(f, Frame::Broadcast(B::Gossip { .. })))
            .collect()
    };
    assert!(
        matches!(&gossip(sent_to(&out, node_b))[..], [Frame::Broadcast(B::Gossip { msg: m, .. })] if m.data == "from a seed")
    );
    for s in [s1, s2] {
        assert!(
            !sent_to(&out, s)
                .iter()
                .any(|f| matches!(f, Frame::Seed(S::Text { .. })))
        );
    }
    assert_eq!(e.stats().duplicates, 1);

    // What we publish goes to seeds as MESSAGE and to nodes as GOSSIP.
    e.publish("mine", T0 + 3).unwrap();
    let out = drain(&mut e);
    assert_eq!(
        sent_to(&out, s1),
        vec![Frame::Seed(S::Text {
            data: "mine".into()
        })]
    );
    assert!(
        matches!(&gossip(sent_to(&out, node_b))[..], [Frame::Broadcast(B::Gossip { msg: m, .. })] if m.data == "mine")
    );
    // What another node published is not ours to give seeds.
    let theirs = Message::signed(&key(2), 1, T0, "theirs".into());
    e.frame(
        node_b,
        &Frame::Broadcast(B::Gossip {
            msg: theirs,
            hops: 1,
        })
        .encode(),
        T0 + 4,
    );
    let out = drain(&mut e);
    assert!(sent_to(&out, s1).is_empty() && sent_to(&out, s2).is_empty());
}

#[test]
fn publish_refuses_empty_and_oversized_text() {
    let mut e = engine(1);
    assert!(e.publish("", T0).is_err());
    assert!(e.publish(&"x".repeat(64 * 1024 + 1), T0).is_err());
    assert!(e.publish(&"x".repeat(64 * 1024), T0).is_ok());
}

#[test]
fn a_node_acknowledges_what_a_browser_published() {
    let mut page = Engine::new(
        Config {
            kind: PeerKind::Browser,
            transport_ping: false,
            ..Config::default()
        },
        page_identity(7),
        3,
        T0,
    );
    let mut n = engine(1);
    page.add_peer("ws://me:3000", T0).unwrap();
    let (pc, _) = dial_of(&drain(&mut page))[0].clone();
    page.opened(pc, T0);
    let nc = n.accepted(T0);
    // Relay frames between the two by hand until both are quiet.
    let pump = |page: &mut Engine, n: &mut Engine| {
        let mut acked = Vec::new();
        loop {
            let (po, no) = (drain(page), drain(n));
            if po.is_empty() && no.is_empty() {
                return acked;
            }
            for f in sent_to(&po, pc) {
                n.frame(nc, &f.encode(), T0 + 1);
            }
            for f in sent_to(&no, nc) {
                page.frame(pc, &f.encode(), T0 + 1);
            }
            acked.extend(po.iter().filter_map(|o| match o {
                Output::Acked { id, by } => Some((*id, *by)),
                _ => None,
            }));
        }
    };
    pump(&mut page, &mut n);
    assert_eq!(n.peers()[0].kind, Some(PeerKind::Browser));
    assert_eq!(page.links()[0].state, hearsay_proto::LinkState::Open);
    let msg = page.publish("from the page", T0 + 2).unwrap();
    let acked = pump(&mut page, &mut n);
    assert_eq!(acked, vec![(msg.id, node(1))]);
}

#[test]
fn links_say_why_they_are_down() {
    let mut e = engine(1);
    e.add_peer("ws://gone:3000", T0).unwrap();
    let (conn, _) = dial_of(&drain(&mut e))[0].clone();
    assert_eq!(e.links()[0].state, hearsay_proto::LinkState::Connecting);
    e.dial_failed(conn, "connection refused", T0 + 10);
    let link = &e.links()[0];
    assert!(matches!(link.state, hearsay_proto::LinkState::Retrying { at } if at > T0 + 10));
    assert_eq!(link.last_error.as_deref(), Some("connection refused"));
    assert!(link.pinned);
}

#[test]
fn frames_over_the_size_or_address_limit_are_bad_and_a_large_history_fits_in_frames() {
    let mut e = engine(1);
    let c = join(&mut e, 2, &["ws://b:3000"], T0);
    drain(&mut e);
    let huge = "x".repeat(hearsay_proto::wire::MAX_FRAME_BYTES + 1);
    e.frame(c, &huge, T0);
    assert_eq!(e.stats().bad_frames, 1);
    // So is a frame with more addresses than any of ours carries.
    let many: Vec<hearsay_proto::PeerRecord> = (0..=hearsay_proto::wire::MAX_ADDRESSES)
        .map(|i| hearsay_proto::PeerRecord {
            id: node(100),
            address: format!("ws://10.0.0.1:{}", 1000 + i),
            aliases: vec![],
        })
        .collect();
    e.frame(
        c,
        &Frame::Membership(M::ShuffleReply { peers: many }).encode(),
        T0,
    );
    assert_eq!(e.stats().bad_frames, 2);
    // The largest history a peer can ask for at once, every character an escape: each
    // MESSAGES frame still fits within the limit.
    let text = "\u{1}".repeat(hearsay_proto::wire::MAX_MESSAGE_BYTES);
    let messages: Vec<Message> = (0..hearsay_proto::wire::MAX_WANT as u64)
        .map(|seq| Message::signed(&key(9), seq, T0, text.clone()))
        .collect();
    e.provide(c, messages, T0);
    let out = drain(&mut e);
    let frames: Vec<usize> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send { conn, frame } if *conn == c => Some(frame.len()),
            _ => None,
        })
        .collect();
    assert!(frames.len() > 1);
    assert!(
        frames
            .iter()
            .all(|&len| len <= hearsay_proto::wire::MAX_FRAME_BYTES),
        "{frames:?}"
    );
}

#[test]
fn a_peer_closed_for_bad_frames_is_refused_for_a_while_when_it_comes_back() {
    let mut e = engine(1);
    let c = join(&mut e, 2, &["ws://b:3000"], T0);
    drain(&mut e);
    for _ in 0..Config::default().max_bad_frames {
        e.frame(c, "not json", T0);
    }
    assert!(matches!(
        closed(&drain(&mut e), c),
        Some(CloseReason::TooManyBadFrames { .. })
    ));
    e.closed(c, None, T0);
    // Back under the same id: refused, saying for how long.
    let again = e.accepted(T0 + 1_000);
    e.frame(again, &hello(2, &["ws://b:3000"]), T0 + 1_000);
    let reason = closed(&drain(&mut e), again).expect("refused");
    assert_eq!(reason, CloseReason::Refused { seconds: 599 });
    assert!(reason.to_string().contains("599 s"), "{reason}");
    assert_eq!(e.stats().refused, 1);
    e.closed(again, None, T0 + 1_000);
    // Once the time is up, it is taken again.
    let later = T0 + Config::default().refuse_for + 1;
    let back = e.accepted(later);
    e.frame(back, &hello(2, &["ws://b:3000"]), later);
    assert_eq!(closed(&drain(&mut e), back), None);
}

#[test]
fn a_peer_cannot_make_a_node_dial_without_bound() {
    let mut config = Config {
        listen_addresses: vec![ME.into()],
        ..Config::default()
    };
    config.limits.dials = hearsay_proto::Rate::new(1.0, 2.0);
    let mut e = Engine::new(config, identity(1), 1, T0);
    let c = join(&mut e, 2, &["ws://b:3000"], T0);
    drain(&mut e);
    // Each FORWARD_JOIN at the end of its walk asks us to link to a node we do not know.
    for i in 0..6u8 {
        let peer = hearsay_proto::PeerRecord {
            id: node(10 + i),
            address: format!("ws://10.0.0.{i}:3000"),
            aliases: vec![],
        };
        e.frame(
            c,
            &Frame::Membership(M::ForwardJoin { peer, ttl: 0 }).encode(),
            T0,
        );
    }
    assert_eq!(dial_of(&drain(&mut e)).len(), 2, "the burst allowance");
    assert_eq!(e.stats().dials_limited, 4);
    // A second later, one more token.
    let peer = hearsay_proto::PeerRecord {
        id: node(30),
        address: "ws://10.0.0.30:3000".into(),
        aliases: vec![],
    };
    e.frame(
        c,
        &Frame::Membership(M::ForwardJoin { peer, ttl: 0 }).encode(),
        T0 + 1_000,
    );
    assert_eq!(dial_of(&drain(&mut e)).len(), 1);
}

/// Node 1 with these history settings.
fn engine_with_history(history: hearsay_proto::History) -> Engine {
    let config = Config {
        listen_addresses: vec![ME.into()],
        history,
        ..Config::default()
    };
    Engine::new(config, identity(1), 1, T0)
}

/// The retention window: what ages out is evicted (the driver is told to drop it) and
/// refused if it comes again; a copy stamped too far ahead is refused too; neither is
/// delivered nor marked as seen.
#[test]
fn messages_outside_the_window_are_refused_and_aged_ones_evicted() {
    let mut n = engine_with_history(hearsay_proto::History {
        retention: Some(10_000),
        evict_every: 1_000,
        ..hearsay_proto::History::default()
    });
    let c = join(&mut n, 2, &["ws://b:3000"], T0);
    drain(&mut n);
    let mine = n.publish("kept for 10 s", T0).unwrap();
    drain(&mut n);
    let mut now = T0;
    let mut evicted = Vec::new();
    while now < T0 + 12_000 {
        now = n.poll_timeout().unwrap().max(now + 1);
        n.handle_timeout(now);
        evicted.extend(drain(&mut n).into_iter().filter_map(|o| match o {
            Output::Evict { before, count } => Some((before, count)),
            _ => None,
        }));
    }
    assert!(
        matches!(evicted[..], [(before, 1)] if before > T0 && before <= now - 10_000),
        "{evicted:?}"
    );
    assert_eq!(n.stats().evicted, 1);
    let gossip = |msg: &Message| Frame::encode_gossip(msg, 1);
    let stamped = |ts: u64, text: &str| Message::signed(&key(2), 1, ts, text.into());
    // What aged out comes back from a neighbour, with one more too old and one from the
    // future: none is delivered.
    for msg in [
        mine,
        stamped(now - 20_000, "too old"),
        stamped(now + 3_600_000, "from the future"),
    ] {
        n.frame(c, &gossip(&msg), now);
        let out = drain(&mut n);
        assert!(
            !out.iter().any(|o| matches!(o, Output::Deliver { .. })),
            "{} was delivered",
            msg.data
        );
    }
    assert_eq!((n.stats().too_old, n.stats().from_future), (2, 1));
    assert_eq!(n.stats().bad_frames, 0, "a wrong clock is not a bad frame");
    // One stamped now is delivered.
    n.frame(c, &gossip(&stamped(now, "now")), now);
    assert!(
        drain(&mut n)
            .iter()
            .any(|o| matches!(o, Output::Deliver { .. }))
    );
}

/// A page whose clock runs an hour ahead is told why its message was refused.
#[test]
fn a_page_with_a_clock_far_ahead_is_told_to_check_it() {
    let ahead = 3_600_000;
    let mut page = Engine::new(
        Config {
            kind: PeerKind::Browser,
            transport_ping: false,
            ..Config::default()
        },
        page_identity(7),
        3,
        T0 + ahead,
    );
    let mut n = engine(1);
    page.add_peer("ws://me:3000", T0 + ahead).unwrap();
    let (pc, _) = dial_of(&drain(&mut page))[0].clone();
    page.opened(pc, T0 + ahead);
    let nc = n.accepted(T0);
    let mut refused = Vec::new();
    let mut pump = |page: &mut Engine, n: &mut Engine| loop {
        let (po, no) = (drain(page), drain(n));
        if po.is_empty() && no.is_empty() {
            return;
        }
        for f in sent_to(&po, pc) {
            n.frame(nc, &f.encode(), T0 + 1);
        }
        for f in sent_to(&no, nc) {
            page.frame(pc, &f.encode(), T0 + ahead + 1);
        }
        refused.extend(po.into_iter().filter_map(|o| match o {
            Output::Refused { reason, id, .. } => Some((reason, id)),
            _ => None,
        }));
    };
    pump(&mut page, &mut n);
    let msg = page.publish("from the future", T0 + ahead + 2).unwrap();
    pump(&mut page, &mut n);
    assert_eq!(
        refused,
        vec![(
            "message is stamped 1 h ahead of this node's clock (at most 5 min); check the clock"
                .to_string(),
            Some(msg.id)
        )]
    );
    assert_eq!(n.stats().delivered, 0);
}

/// Over its storage cap a node keeps the newest, and refuses a copy older than the oldest it
/// keeps, saying why.
#[test]
fn over_the_storage_cap_the_oldest_go_and_older_copies_are_refused() {
    let mut n = engine_with_history(hearsay_proto::History {
        max_messages: Some(1),
        evict_every: 1_000,
        ..hearsay_proto::History::default()
    });
    let c = join(&mut n, 2, &["ws://b:3000"], T0);
    n.publish("first", T0).unwrap();
    n.publish("second", T0 + 10).unwrap();
    drain(&mut n);
    n.handle_timeout(T0 + 1_000);
    let out = drain(&mut n);
    assert!(
        out.contains(&Output::Evict {
            before: T0 + 1,
            count: 1
        }),
        "{out:?}"
    );
    // Stamped like the one evicted: older than the oldest kept.
    let older = Message::signed(&key(2), 1, T0, "older".into());
    n.frame(c, &Frame::encode_gossip(&older, 1), T0 + 1_001);
    assert!(
        !drain(&mut n)
            .iter()
            .any(|o| matches!(o, Output::Deliver { .. }))
    );
    assert_eq!(n.stats().too_old, 1);
}

/// A node whose origins may each have 20 messages relayed at once and 1 a second after (a
/// relay 5 over them, then 1 every 10 s), joined by node 2.
fn quota_node() -> (Engine, ConnId) {
    let mut config = Config {
        listen_addresses: vec![ME.into()],
        ..Config::default()
    };
    config.limits.origin_messages = hearsay_proto::Rate::new(1.0, 20.0);
    config.limits.over_quota = hearsay_proto::Rate::new(0.1, 5.0);
    let mut n = Engine::new(config, identity(1), 1, T0);
    let c = join(&mut n, 2, &["ws://b:3000"], T0);
    drain(&mut n);
    (n, c)
}

/// Per-origin quotas: what node peers relay of one origin beyond its quota is dropped (not
/// marked as seen), and a peer that keeps pushing over quota is closed, told why, and refused
/// under the same id when it comes back.
#[test]
fn a_relay_that_keeps_pushing_over_an_origins_quota_is_closed_and_refused() {
    let (mut n, c) = quota_node();
    let msg = |seq: u64| {
        let data = format!("flood {seq}");
        Message::signed(&key(9), seq, T0, data)
    };
    let mut delivered = 0;
    let mut ended = None;
    for seq in 1..=40 {
        n.frame(c, &Frame::encode_gossip(&msg(seq), 1), T0);
        let out = drain(&mut n);
        delivered += out
            .iter()
            .filter(|o| matches!(o, Output::Deliver { .. }))
            .count();
        if let Some(reason) = closed(&out, c) {
            ended = Some((seq, reason));
            break;
        }
    }
    assert_eq!(delivered, 20, "the quota's burst");
    assert_eq!(
        ended,
        Some((26, CloseReason::OverQuota)),
        "5 over are tolerated"
    );
    assert_eq!(n.stats().over_quota, 6);
    // Back under the same id: refused, told for how long.
    let again = n.accepted(T0 + 1_000);
    n.frame(again, &hello(2, &["ws://b:3000"]), T0 + 1_000);
    assert!(matches!(
        closed(&drain(&mut n), again),
        Some(CloseReason::Refused { .. })
    ));
    // Another relay is not blamed for what the first did, and the origin's quota refills:
    // ten seconds on, ten more of its messages are taken; two over are tolerated.
    let d = join(&mut n, 3, &["ws://c:3000"], T0 + 10_000);
    drain(&mut n);
    let mut taken = 0;
    for seq in 100..112 {
        n.frame(d, &Frame::encode_gossip(&msg(seq), 1), T0 + 10_000);
        taken += drain(&mut n)
            .iter()
            .filter(|o| matches!(o, Output::Deliver { .. }))
            .count();
    }
    assert_eq!(taken, 10);
    assert!(n.peers().iter().any(|p| p.id == Some(node(3))));
}

/// Seed text shares one origin but enters at many nodes, each within the quota: a relay that
/// pushes seed text past it is not to blame, and is not closed (what is over is dropped).
#[test]
fn a_relay_pushing_seed_text_over_its_shared_quota_is_not_closed() {
    let (mut n, c) = quota_node();
    let mut delivered = 0;
    for i in 0..40 {
        let msg = Message::from_seed(format!("seed line {i}"), T0);
        n.frame(c, &Frame::encode_gossip(&msg, 1), T0);
        let out = drain(&mut n);
        assert_eq!(closed(&out, c), None, "closed at seed line {i}");
        delivered += out
            .iter()
            .filter(|o| matches!(o, Output::Deliver { .. }))
            .count();
    }
    assert_eq!(delivered, 20, "the shared quota's burst");
    assert_eq!(n.stats().over_quota, 20);
}

/// What a node fetched (history it catches up on) is metered by when it was published, not
/// when it arrives: an author's hour at its full rate is taken at once, but no more in one
/// minute of stamps than it could have published live. The peer that gave it is not blamed.
#[test]
fn fetched_history_is_metered_by_its_stamps_not_by_when_it_arrives() {
    let (mut n, c) = quota_node();
    let fetch = |n: &mut Engine, messages: Vec<Message>| {
        let frame = Frame::Sync(hearsay_proto::sync::Message::Messages {
            messages,
            done: true,
        });
        n.frame(c, &frame.encode(), T0);
        drain(n)
            .iter()
            .filter(|o| matches!(o, Output::Deliver { .. }))
            .count()
    };
    // 200 messages published one a second: ten times the quota's burst, all taken at once.
    let paced: Vec<Message> = (0..200)
        .map(|i| {
            Message::signed(
                &key(9),
                i + 1,
                T0 - 600_000 + i * 1_000,
                format!("paced {i}"),
            )
        })
        .collect();
    assert_eq!(fetch(&mut n, paced), 200);
    // 100 stamped within one minute: the burst and a minute at 1/s (80) are taken.
    let dense: Vec<Message> = (0..100)
        .map(|i| Message::signed(&key(8), i + 1, T0 - 60_000 + i, format!("dense {i}")))
        .collect();
    assert_eq!(fetch(&mut n, dense), 80);
    assert_eq!(n.stats().over_quota, 20);
    assert!(n.peers().iter().any(|p| p.id == Some(node(2))));
}

/// A node's own publishes count against its origin's quota, as they will at every node that
/// relays them: past it, publishing is refused with when to try again.
#[test]
fn a_node_publishing_past_its_origins_quota_is_told_to_wait() {
    let mut config = Config::default();
    config.limits.origin_messages = hearsay_proto::Rate::new(1.0, 3.0);
    let mut n = Engine::new(config, identity(1), 1, T0);
    for i in 0..3 {
        n.publish(&format!("m{i}"), T0).unwrap();
    }
    let err = n.publish("one too many", T0).unwrap_err();
    assert_eq!(
        err,
        hearsay_proto::PublishError::OverQuota {
            burst: 3,
            per_second: 1,
            retry_after_ms: 1_000
        }
    );
    assert!(err.to_string().contains("try again in 1000 ms"), "{err}");
    n.publish("a second later", T0 + 1_000).unwrap();
}

/// A message whose id matches its fields but whose signature is not its author's (a forger
/// wrote it under another's key) is dropped before it is stored or passed on, its sender is
/// closed and refused, and the id is not marked as seen: the real message still gets in.
#[test]
fn a_forged_message_is_dropped_without_keeping_the_real_one_out() {
    let mut e = engine(1);
    let mallory = join(&mut e, 2, &["ws://m:3000"], T0);
    let honest = join(&mut e, 3, &["ws://h:3000"], T0);
    drain(&mut e);

    let real = Message::signed(&key(9), 1, T0, "I owe you nothing".into());
    let mut forged = real.clone();
    forged.sig = Message::signed(&key(2), 1, T0, "I owe you nothing".into()).sig;
    assert!(forged.id_is_valid() && !forged.signature_is_valid());
    e.frame(mallory, &Frame::encode_gossip(&forged, 1), T0 + 1);
    let out = drain(&mut e);
    assert_eq!(closed(&out, mallory), Some(CloseReason::BadSignature));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Deliver { .. })),
        "never delivered"
    );
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Send { frame, .. } if frame.contains("GOSSIP"))),
        "never passed on"
    );
    assert_eq!(e.stats().bad_signatures, 1);

    e.frame(honest, &Frame::encode_gossip(&real, 1), T0 + 2);
    let out = drain(&mut e);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Deliver { msg, .. } if *msg == real)),
        "the real message is delivered"
    );

    // Mallory is refused for a while under its id.
    e.closed(mallory, None, T0 + 3);
    let again = e.accepted(T0 + 4);
    e.frame(again, &hello(2, &["ws://m:3000"]), T0 + 4);
    assert!(matches!(
        closed(&drain(&mut e), again),
        Some(CloseReason::Refused { .. })
    ));
}

/// No peer can claim an id that does not derive from the key it offers.
#[test]
fn a_hello_whose_id_is_not_its_keys_is_closed() {
    let mut e = engine(1);
    let c = e.accepted(T0);
    let claim = Frame::Handshake(H::Hello(Hello {
        protocol: "hearsay".into(),
        version: PROTOCOL_VERSION,
        id: node(3),
        key: Some(key(2).public()),
        tab: None,
        nonce: Some(Nonce::from_bytes([3; 16])),
        proof: None,
        run: None,
        kind: PeerKind::Node,
        addresses: vec![],
        home: None,
        root: None,
        term: None,
    }))
    .encode();
    e.frame(c, &claim, T0);
    assert_eq!(closed(&drain(&mut e), c), Some(CloseReason::BadIdentity));
    assert_eq!(e.stats().bad_identities, 1);
}

/// Naming another's key is not enough: the dialer must sign the acceptor's nonce with it,
/// and the acceptor must sign the dialer's. A wrong proof, or none in time, closes the link
/// with the reason, and the peer is never taken for the node it named (nor for a seed).
#[test]
fn a_peer_that_cannot_prove_its_key_is_closed() {
    // Mallory names node 2's key and signs with its own.
    let mut e = engine(1);
    let c = e.accepted(T0);
    e.frame(c, &hello(2, &["ws://b:3000"]), T0);
    let nonce = nonce_of(&drain(&mut e), c).expect("the acceptor answers with a nonce");
    let forged = key(9).sign(&handshake_proof(Role::Dialer, &nonce, e.id()));
    e.frame(
        c,
        &Frame::Handshake(H::Proof { sig: forged }).encode(),
        T0 + 1,
    );
    assert_eq!(closed(&drain(&mut e), c), Some(CloseReason::BadIdentity));
    assert!(e.neighbors().is_empty());

    // A proof made for another node is worth nothing here.
    let c = e.accepted(T0 + 2);
    e.frame(c, &hello(2, &["ws://b:3000"]), T0 + 2);
    let nonce = nonce_of(&drain(&mut e), c).unwrap();
    let elsewhere = key(2).sign(&handshake_proof(Role::Dialer, &nonce, node(7)));
    e.frame(
        c,
        &Frame::Handshake(H::Proof { sig: elsewhere }).encode(),
        T0 + 3,
    );
    assert_eq!(closed(&drain(&mut e), c), Some(CloseReason::BadIdentity));

    // No proof at all: closed when the handshake's time is up, not taken for a seed.
    let c = e.accepted(T0 + 10);
    e.frame(c, &hello(2, &["ws://b:3000"]), T0 + 10);
    drain(&mut e);
    e.handle_timeout(T0 + 10 + Config::default().hello_timeout);
    let out = drain(&mut e);
    assert_eq!(closed(&out, c), Some(CloseReason::BadIdentity));
    assert!(dial_of(&out).is_empty(), "no seed treatment");
    assert_eq!(e.stats().bad_identities, 3);

    // Dialing: an acceptor whose answer does not sign our nonce is closed too.
    e.add_peer("ws://b:3000", T0 + 20).unwrap();
    let (conn, _) = dial_of(&drain(&mut e))[0].clone();
    e.opened(conn, T0 + 20);
    drain(&mut e);
    let mut frame = Frame::decode(&hello(2, &["ws://b:3000"])).unwrap();
    if let Frame::Handshake(H::Hello(h)) = &mut frame {
        h.proof = Some(key(2).sign(b"something else"));
    }
    e.frame(conn, &frame.encode(), T0 + 21);
    assert_eq!(closed(&drain(&mut e), conn), Some(CloseReason::BadIdentity));
}

/// A node keeps its id across restarts. Its new process's link replaces the old run's,
/// which may linger half-open (a crash sends no close): without the run in `HELLO`, the new
/// link would be taken for a duplicate of the dead one.
#[test]
fn a_restarted_node_replaces_its_previous_runs_link() {
    let mut e = engine(1);
    let old = join(&mut e, 2, &["ws://b:3000"], T0);
    drain(&mut e);
    assert_eq!(e.neighbors(), vec![node(2)]);
    let mut restarted = Frame::decode(&hello(2, &["ws://b:3000"])).unwrap();
    if let Frame::Handshake(H::Hello(h)) = &mut restarted {
        h.run = Some(Nonce::from_bytes([42; 16]));
    }
    let new = e.accepted(T0 + 10);
    let out = greet_with(&mut e, new, 2, &restarted.encode(), T0 + 10);
    assert_eq!(closed(&out, old), Some(CloseReason::PeerRestarted));
    assert_eq!(closed(&out, new), None);
    let peers = e.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!((peers[0].conn, peers[0].id), (new, Some(node(2))));
}

/// Seed texts are unsigned by nature, and only a node that took one from a seed relays it. A
/// page links to no seed: a "seed text" from a page is a forgery, and it is closed for it.
#[test]
fn a_page_cannot_pass_off_unsigned_text_as_a_seeds() {
    let mut e = engine(1);
    let tab = Tab::from_bytes([5; 16]);
    let page = Frame::Handshake(H::Hello(Hello {
        protocol: "hearsay".into(),
        version: PROTOCOL_VERSION,
        id: key(5).public().page_id(&tab),
        key: Some(key(5).public()),
        tab: Some(tab),
        nonce: Some(Nonce::from_bytes([5; 16])),
        proof: None,
        run: None,
        kind: PeerKind::Browser,
        addresses: vec![],
        home: Some(e.id()),
        root: None,
        term: None,
    }))
    .encode();
    let c = e.accepted(T0);
    greet_with(&mut e, c, 5, &page, T0);
    assert_eq!(
        e.peers()[0].protocol,
        Protocol::Hearsay,
        "the page is linked"
    );
    let fake = Message::from_seed("unsigned, and from no seed".into(), T0);
    e.frame(c, &Frame::encode_gossip(&fake, 1), T0 + 1);
    let out = drain(&mut e);
    assert_eq!(closed(&out, c), Some(CloseReason::BadSignature));
    assert!(!out.iter().any(|o| matches!(o, Output::Deliver { .. })));
}

/// (author, seq) never repeats: a node restarted with its key numbers on past what its
/// previous run used (the numbers grow with the clock), and two tabs sharing a key count in
/// slots of their own.
#[test]
fn sequence_numbers_never_repeat_across_restarts_or_tabs() {
    let mut first = engine(1);
    let a = first.publish("one", T0).unwrap().seq;
    let b = first.publish("two", T0).unwrap().seq;
    assert!(b > a, "within a millisecond it counts on");
    let mut restarted = engine(1);
    let c = restarted.publish("after a restart", T0 + 1).unwrap().seq;
    assert!(c > b, "{c} after {b}");

    let tab = |n: u8| {
        let config = Config {
            kind: PeerKind::Browser,
            ..Config::default()
        };
        Engine::new(
            config,
            Identity::page(key(7), Tab::from_bytes([n; 16])),
            1,
            T0,
        )
    };
    let (mut t1, mut t2) = (tab(1), tab(2));
    let s1 = t1.publish("same time", T0).unwrap();
    let s2 = t2.publish("same time", T0).unwrap();
    assert_eq!(s1.author, s2.author, "one author");
    assert_ne!(s1.seq, s2.seq);
}

/// Every handshake gets a nonce of its own, made from the node's secret key, so no one can
/// guess the next one and have a proof signed for it in advance.
#[test]
fn each_handshake_has_its_own_nonce() {
    let mut e = engine(1);
    let mut seen = std::collections::HashSet::new();
    for i in 0..20u64 {
        let c = e.accepted(T0 + i);
        e.frame(c, &hello(2, &["ws://b:3000"]), T0 + i);
        let nonce = nonce_of(&drain(&mut e), c).unwrap();
        assert!(seen.insert(nonce.to_string()), "nonce {i} repeated");
    }
    // Another node with the same random seed but another key draws others.
    let mut other = engine(3);
    let c = other.accepted(T0);
    other.frame(c, &hello(2, &["ws://b:3000"]), T0);
    let nonce = nonce_of(&drain(&mut other), c).unwrap();
    assert!(!seen.contains(&nonce.to_string()));
}

/// A message whose store write failed is forgotten: the next copy from a neighbour is taken
/// and delivered (stored) again, rather than refused as held for ever.
#[test]
fn a_message_the_store_failed_to_keep_is_taken_again() {
    let mut n = engine_with_history(hearsay_proto::History::default());
    let c = join(&mut n, 2, &["ws://b:3000"], T0);
    drain(&mut n);
    let msg = Message::signed(&key(2), 1, T0, "lost on a full disk".into());
    let delivered = |n: &mut Engine| {
        drain(n)
            .iter()
            .filter(|o| matches!(o, Output::Deliver { msg: m, .. } if m.id == msg.id))
            .count()
    };
    n.frame(c, &Frame::encode_gossip(&msg, 1), T0);
    assert_eq!(delivered(&mut n), 1);
    n.frame(c, &Frame::encode_gossip(&msg, 1), T0 + 1);
    assert_eq!(delivered(&mut n), 0, "a held copy is not taken twice");
    assert_eq!(n.forget(&[msg.id]), 1);
    assert_eq!(n.forget(&[msg.id]), 0, "forgotten once");
    n.frame(c, &Frame::encode_gossip(&msg, 1), T0 + 2);
    assert_eq!(delivered(&mut n), 1, "the next copy is taken again");
}
