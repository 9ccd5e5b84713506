//! A seed (v1) node written for the tests, behaving as the Node.js seed does, races included:
//! on every new connection (either direction) it sends `SOCKETS` with the addresses it has
//! dialed, and only then records the new address if it dialed it (an address counts as dialed
//! once its dial opens); it dials every address it receives that it has not recorded, even one
//! whose dial is under way, and its own address if told it; a commit stores the text and sends
//! `MESSAGE` to every open socket; a received `MESSAGE` is stored and never forwarded; unknown
//! frame types are ignored; a frame that is not JSON crashes it (every socket closes and it
//! stops listening), and the tests check that it never does.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct Inner {
    dialed: Vec<String>,
    /// Every dial it started, in order.
    dials: Vec<String>,
    sockets: Vec<mpsc::UnboundedSender<String>>,
    messages: Vec<String>,
    non_json: Vec<String>,
    crashed: bool,
}

#[derive(Clone)]
pub struct Seed {
    inner: Arc<Mutex<Inner>>,
    pub address: String,
}

impl Seed {
    /// Starts a seed with its own WebSocket server on 127.0.0.1 (port 0).
    pub async fn start() -> Seed {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("ws://{}", listener.local_addr().unwrap());
        let seed = Seed {
            inner: Arc::default(),
            address,
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
                        s.serve(ws, None).await;
                    }
                });
            }
        });
        seed
    }

    /// The seed's `/add?address=`.
    pub fn add(&self, address: &str) {
        self.dial(address.to_owned());
    }

    /// Dials `address`; it is recorded when the dial opens.
    fn dial(&self, address: String) {
        self.inner.lock().unwrap().dials.push(address.clone());
        let s = self.clone();
        tokio::spawn(async move {
            if let Ok((ws, _)) = tokio_tungstenite::connect_async(&address).await {
                s.serve(ws, Some(address)).await;
            }
        });
    }

    pub fn crashed(&self) -> bool {
        self.inner.lock().unwrap().crashed
    }

    /// Addresses it dialed more than once (the same string).
    pub fn double_dials(&self) -> Vec<String> {
        let dials = self.inner.lock().unwrap().dials.clone();
        let mut twice: Vec<String> = dials
            .iter()
            .filter(|d| dials.iter().filter(|e| e == d).count() > 1)
            .cloned()
            .collect();
        twice.dedup();
        twice
    }

    /// The seed's `/commit?msg=`.
    pub fn commit(&self, text: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner.messages.push(text.to_owned());
        let frame = json!({ "type": "MESSAGE", "data": text }).to_string();
        for tx in &inner.sockets {
            let _ = tx.send(frame.clone());
        }
    }

    pub fn messages(&self) -> Vec<String> {
        self.inner.lock().unwrap().messages.clone()
    }

    pub fn open_sockets(&self) -> usize {
        self.inner
            .lock()
            .unwrap()
            .sockets
            .iter()
            .filter(|s| !s.is_closed())
            .count()
    }

    pub fn dialed(&self) -> Vec<String> {
        self.inner.lock().unwrap().dialed.clone()
    }

    pub fn non_json_frames(&self) -> Vec<String> {
        self.inner.lock().unwrap().non_json.clone()
    }

    async fn serve<S>(&self, ws: tokio_tungstenite::WebSocketStream<S>, dialed: Option<String>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        {
            let mut inner = self.inner.lock().unwrap();
            if inner.crashed {
                return;
            }
            let hello = json!({ "type": "SOCKETS", "addresses": inner.dialed }).to_string();
            let _ = tx.send(hello);
            inner.sockets.push(tx);
            if let Some(address) = dialed {
                inner.dialed.push(address);
            }
        }
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(text) => if sink.send(Message::text(text)).await.is_err() { break },
                    None => break,
                },
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => self.on_frame(text.as_str()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(Message::Binary(b))) => {
                        self.on_frame(&format!("binary {} bytes", b.len()));
                    }
                    // tungstenite answers pings itself.
                    Some(Ok(_)) => {}
                },
            }
        }
        // Drop our sender so open_sockets() stops counting this one.
        rx.close();
    }

    fn on_frame(&self, text: &str) {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            // JSON.parse throws and the process ends: every socket closes.
            let mut inner = self.inner.lock().unwrap();
            inner.non_json.push(text.to_owned());
            inner.crashed = true;
            inner.sockets.clear();
            return;
        };
        match value["type"].as_str() {
            Some("MESSAGE") => {
                if let Some(data) = value["data"].as_str() {
                    self.inner.lock().unwrap().messages.push(data.to_owned());
                }
            }
            Some("SOCKETS") => {
                let mut fresh = Vec::new();
                {
                    let inner = self.inner.lock().unwrap();
                    for a in value["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        // Only what has opened is recorded: a dial under way is dialed again.
                        if !inner.dialed.iter().any(|d| d == a) {
                            fresh.push(a.to_owned());
                        }
                    }
                }
                for a in fresh {
                    self.dial(a);
                }
            }
            _ => {}
        }
    }
}
