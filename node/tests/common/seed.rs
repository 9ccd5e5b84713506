//! A seed (v1) node written for the tests, behaving as the Node.js seed does: on every new
//! connection (either direction) it sends `SOCKETS` with the addresses it has dialed; it dials
//! every address it receives that it has not dialed; a commit stores the text and sends
//! `MESSAGE` to every open socket; a received `MESSAGE` is stored and never forwarded; unknown
//! frame types are ignored; anything that is not JSON fails the test (the seed would crash).

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct Inner {
    dialed: Vec<String>,
    sockets: Vec<mpsc::UnboundedSender<String>>,
    messages: Vec<String>,
    non_json: Vec<String>,
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
                let s = s.clone();
                tokio::spawn(async move {
                    if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                        s.serve(ws).await;
                    }
                });
            }
        });
        seed
    }

    /// The seed's `/add?address=`.
    pub fn add(&self, address: &str) {
        self.inner.lock().unwrap().dialed.push(address.to_owned());
        self.dial(address.to_owned());
    }

    fn dial(&self, address: String) {
        let s = self.clone();
        tokio::spawn(async move {
            if let Ok((ws, _)) = tokio_tungstenite::connect_async(&address).await {
                s.serve(ws).await;
            }
        });
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

    async fn serve<S>(&self, ws: tokio_tungstenite::WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        {
            let mut inner = self.inner.lock().unwrap();
            let hello = json!({ "type": "SOCKETS", "addresses": inner.dialed }).to_string();
            let _ = tx.send(hello);
            inner.sockets.push(tx);
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
                        self.inner.lock().unwrap().non_json.push(format!("binary {} bytes", b.len()));
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
            self.inner.lock().unwrap().non_json.push(text.to_owned());
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
                    let mut inner = self.inner.lock().unwrap();
                    for a in value["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        if !inner.dialed.iter().any(|d| d == a) {
                            inner.dialed.push(a.to_owned());
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
