//! A TCP proxy in front of a node that holds back what the node says on each WebSocket for a
//! while after the upgrade: the node's `HELLO` reaches the client late, as it does over a slow
//! link or to a page whose thread is busy. Everything else passes through untouched.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct SlowProxy {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl SlowProxy {
    /// Listens on a port of its own and forwards to `target`.
    pub async fn start(target: SocketAddr, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, target, delay));
            }
        });
        SlowProxy { addr, task }
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(client: TcpStream, target: SocketAddr, delay: Duration) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    });
    // The node's first answer: headers through at once; after a `101 Switching Protocols`,
    // the WebSocket frames that follow wait.
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let Ok(n) = server_read.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let (headers, rest) = head.split_at(end + 4);
            if client_write.write_all(headers).await.is_err() {
                return;
            }
            if headers.starts_with(b"HTTP/1.1 101") {
                tokio::time::sleep(delay).await;
            }
            if client_write.write_all(rest).await.is_err() {
                return;
            }
            break;
        }
    }
    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
}

/// A reverse proxy that serves a node under a path, as a web server configured with
/// `handle_path /hearsay/*` does: the prefix is taken off each request's path on the way in,
/// and everything else (WebSocket frames included) passes through.
pub struct PathProxy {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl PathProxy {
    pub async fn start(target: SocketAddr, prefix: &'static str) -> PathProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(strip(client, target, prefix));
            }
        });
        PathProxy { addr, task }
    }
}

impl Drop for PathProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn strip(client: TcpStream, target: SocketAddr, prefix: &str) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    // The request line: `GET /hearsay/ws HTTP/1.1` goes on as `GET /ws HTTP/1.1`.
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    let line_end = loop {
        let Ok(n) = client_read.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            break end;
        }
    };
    let line = String::from_utf8_lossy(&head[..line_end]).into_owned();
    let mut parts = line.splitn(3, ' ');
    let (method, path, version) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let Some(rest) = path.strip_prefix(prefix) else {
        let _ = server_write.shutdown().await;
        return;
    };
    let rest = if rest.is_empty() { "/" } else { rest };
    let rewritten = format!("{method} {rest} {version}");
    if server_write.write_all(rewritten.as_bytes()).await.is_err()
        || server_write.write_all(&head[line_end..]).await.is_err()
    {
        return;
    }
    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
}
