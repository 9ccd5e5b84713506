//! A seed (v1) node for the tests: the simulator's seed ([`SeedNode`]: the Node.js seed's
//! behaviour with no I/O, races included) served on real WebSockets, so the tests and the
//! simulator emulate one and the same seed. It has its own WebSocket server on 127.0.0.1
//! (port 0) and dials what it is told to, one task per socket. A frame that is not JSON
//! crashes it (every socket closes and it stops listening), and the tests check that it
//! never does.

use futures_util::{SinkExt, StreamExt};
use hearsay_proto::ConnId;
use hearsay_proto::sim::{SeedNode, SeedOut};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct Inner {
    node: SeedNode,
    /// What each open socket's task sends.
    sockets: HashMap<ConnId, mpsc::UnboundedSender<String>>,
}

#[derive(Clone)]
pub struct Seed {
    inner: Arc<Mutex<Inner>>,
    pub address: String,
    /// The address it listens on and dials from.
    ip: IpAddr,
}

impl Seed {
    /// Starts a seed with its own WebSocket server on 127.0.0.1 (port 0).
    pub async fn start() -> Seed {
        Seed::start_on([127, 0, 0, 1].into()).await
    }

    /// Starts a seed that listens on `ip` (port 0) and dials from it, as a seed on another
    /// machine would (Linux routes all of 127.0.0.0/8 to loopback).
    pub async fn start_on(ip: IpAddr) -> Seed {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let address = format!("ws://{}", listener.local_addr().unwrap());
        let seed = Seed {
            inner: Arc::default(),
            address,
            ip,
        };
        let s = seed.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if s.crashed() {
                    return;
                }
                let s = s.clone();
                tokio::spawn(async move {
                    if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                        let conn = s.inner.lock().unwrap().node.accepted();
                        s.serve(ws, conn).await;
                    }
                });
            }
        });
        seed
    }

    /// The seed's `/add?address=`.
    pub fn add(&self, address: &str) {
        self.inner.lock().unwrap().node.add(address);
        self.carry_out();
    }

    /// The seed's `/commit?msg=`.
    pub fn commit(&self, text: &str) {
        self.inner.lock().unwrap().node.commit(text);
        self.carry_out();
    }

    pub fn crashed(&self) -> bool {
        self.inner.lock().unwrap().node.crashed.is_some()
    }

    /// Addresses it dialed more than once (the same string).
    pub fn double_dials(&self) -> Vec<String> {
        let node = &self.inner.lock().unwrap().node;
        node.double_dials().into_iter().map(|(a, _)| a).collect()
    }

    pub fn messages(&self) -> Vec<String> {
        self.inner.lock().unwrap().node.messages.clone()
    }

    pub fn open_sockets(&self) -> usize {
        self.inner.lock().unwrap().node.sockets.len()
    }

    pub fn dialed(&self) -> Vec<String> {
        self.inner.lock().unwrap().node.dialed.clone()
    }

    pub fn non_json_frames(&self) -> Vec<String> {
        self.inner
            .lock()
            .unwrap()
            .node
            .crashed
            .iter()
            .cloned()
            .collect()
    }

    /// Carries out what the seed asked for: sends, dials, and its crash.
    fn carry_out(&self) {
        let mut inner = self.inner.lock().unwrap();
        while let Some(out) = inner.node.poll() {
            match out {
                SeedOut::Send(conn, text) => {
                    if let Some(tx) = inner.sockets.get(&conn) {
                        let _ = tx.send(text);
                    }
                }
                SeedOut::Dial(conn, address) => {
                    let s = self.clone();
                    tokio::spawn(async move {
                        match dial_from(s.ip, &address).await {
                            Some(ws) => s.serve(ws, conn).await,
                            None => s.inner.lock().unwrap().node.closed(conn),
                        }
                    });
                }
                // Its process ends: every socket's task ends with its sender.
                SeedOut::Crashed => inner.sockets.clear(),
            }
        }
    }

    async fn serve<S>(&self, ws: tokio_tungstenite::WebSocketStream<S>, conn: ConnId)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        {
            let mut inner = self.inner.lock().unwrap();
            if inner.node.crashed.is_some() {
                return;
            }
            inner.sockets.insert(conn, tx);
            inner.node.opened(conn);
        }
        self.carry_out();
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(text) => if sink.send(Message::text(text)).await.is_err() { break },
                    None => break,
                },
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => self.frame(conn, text.as_str()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(Message::Binary(b))) => {
                        self.frame(conn, &format!("binary {} bytes", b.len()));
                    }
                    // tungstenite answers pings itself.
                    Some(Ok(_)) => {}
                },
            }
        }
        let mut inner = self.inner.lock().unwrap();
        inner.sockets.remove(&conn);
        inner.node.closed(conn);
    }

    fn frame(&self, conn: ConnId, text: &str) {
        self.inner.lock().unwrap().node.frame(conn, text);
        self.carry_out();
    }
}

/// Opens a WebSocket to `address` (`ws://IP:PORT[/path]`) from a socket bound to `ip`.
pub async fn dial_from(
    ip: IpAddr,
    address: &str,
) -> Option<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let authority = address.strip_prefix("ws://")?.split('/').next()?;
    let to: std::net::SocketAddr = authority.parse().ok()?;
    let socket = match ip {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .ok()?;
    socket.bind((ip, 0).into()).ok()?;
    let tcp = socket.connect(to).await.ok()?;
    let (ws, _) = tokio_tungstenite::client_async(address, tcp).await.ok()?;
    Some(ws)
}
