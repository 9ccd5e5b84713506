//! Where delivered messages are kept: one small interface, [`Store`], with two
//! implementations — [`DiskStore`] (redb, the default) and [`MemoryStore`] (tests, demos).
//!
//! Writes are queued and acknowledged once durable. `DiskStore` has one writer thread that
//! takes every write waiting in its queue and commits them in one transaction (group commit):
//! a commit costs an fsync, so sixteen concurrent clients share one fsync instead of paying
//! sixteen. Reads run concurrently in their own read transactions.
//!
//! Every message stored is also told, once durable and in the order stored, to whoever
//! subscribed ([`Store::subscribe`]): that is what `GET /api/stream` sends, so a client that
//! resumes from an event id finds that id in the store.
//!
//! Why redb: pure Rust (nothing to build or install, so `cargo build` is all a user runs),
//! ACID with a durable fsync'd commit by default, and it locks its file, so a second node
//! pointed at the same folder gets a clear error instead of a corrupted store.

use hearsay_proto::sync::{Key, key_of};
use hearsay_proto::{Message, MsgId};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::{broadcast, oneshot};

/// Messages told to subscribers before a slow one misses some (and must page instead).
pub const FEED_BACKLOG: usize = 4096;

/// Messages in arrival order: local sequence number → the message as JSON.
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
/// Message id → (local sequence number, reconciliation timestamp), for dedup, `after` cursors
/// and the engine's index at start.
const IDS: TableDefinition<[u8; 16], (u64, u64)> = TableDefinition::new("ids");

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{0} is in use by another hearsay node (one folder per node; pick another with --data)"
    )]
    InUse(PathBuf),
    #[error("cannot open the store at {path}: {detail}")]
    Open { path: PathBuf, detail: String },
    #[error("storage failed: {0}")]
    Io(String),
    #[error("the store is closed")]
    Closed,
}

/// Why a page of messages could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("no message with id {0} (the `after` cursor must be an id this node holds)")]
    UnknownAfter(MsgId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Told once a write is durable: `Ok(true)` if the message was new, `Ok(false)` if it was
/// already stored.
pub type Ack = oneshot::Sender<Result<bool, StoreError>>;

/// The node's message history, in the order this node received it.
pub trait Store: Send + Sync {
    /// Queues `msg` for storage; `ack`, if given, is told once it is durable.
    fn insert(&self, msg: Message, ack: Option<Ack>);
    /// Up to `limit` messages following `after` (from the start when `None`), oldest first.
    fn page(&self, after: Option<&MsgId>, limit: usize) -> Result<Vec<Message>, PageError>;
    /// The `n` most recent messages, newest first.
    fn recent(&self, n: usize) -> Result<Vec<Message>, StoreError>;
    fn len(&self) -> Result<u64, StoreError>;
    fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
    /// The reconciliation key of every message held, for the engine to know at start.
    fn keys(&self) -> Result<Vec<Key>, StoreError>;
    /// The messages with these ids that are held (others are skipped).
    fn get_many(&self, ids: &[MsgId]) -> Result<Vec<Message>, StoreError>;
    /// Every message stored from now on, once durable, in the order stored.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Message>>;
    /// Finishes queued writes and releases the store.
    fn close(&self);
}

/// Messages in memory, lost on restart. Writes are "durable" at once.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<(Vec<Message>, HashMap<MsgId, usize>)>,
    feed: broadcast::Sender<Arc<Message>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            feed: broadcast::channel(FEED_BACKLOG).0,
        }
    }
}

impl Store for MemoryStore {
    fn insert(&self, msg: Message, ack: Option<Ack>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (messages, position) = &mut *inner;
        let new = !position.contains_key(&msg.id);
        if new {
            position.insert(msg.id, messages.len());
            // Told while the lock is held, so subscribers hear in the order stored.
            let _ = self.feed.send(Arc::new(msg.clone()));
            messages.push(msg);
        }
        if let Some(ack) = ack {
            let _ = ack.send(Ok(new));
        }
    }

    fn page(&self, after: Option<&MsgId>, limit: usize) -> Result<Vec<Message>, PageError> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let start = match after {
            None => 0,
            Some(id) => inner.1.get(id).ok_or(PageError::UnknownAfter(*id))? + 1,
        };
        Ok(inner.0.iter().skip(start).take(limit).cloned().collect())
    }

    fn recent(&self, n: usize) -> Result<Vec<Message>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(inner.0.iter().rev().take(n).cloned().collect())
    }

    fn len(&self) -> Result<u64, StoreError> {
        Ok(self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.len() as u64)
    }

    fn keys(&self) -> Result<Vec<Key>, StoreError> {
        Ok(self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .iter()
            .map(key_of)
            .collect())
    }

    fn get_many(&self, ids: &[MsgId]) -> Result<Vec<Message>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(ids
            .iter()
            .filter_map(|id| inner.1.get(id).map(|&i| inner.0[i].clone()))
            .collect())
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.feed.subscribe()
    }

    fn close(&self) {}
}

struct Write {
    msg: Message,
    ack: Option<Ack>,
}

/// Messages in a redb file, written by one group-committing thread.
pub struct DiskStore {
    db: Arc<Database>,
    path: PathBuf,
    writer: Mutex<Option<(mpsc::Sender<Write>, std::thread::JoinHandle<()>)>>,
    feed: broadcast::Sender<Arc<Message>>,
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

impl DiskStore {
    /// Opens (or creates) the store in folder `dir`.
    pub fn open(dir: &Path) -> Result<DiskStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
            path: dir.to_owned(),
            detail: e.to_string(),
        })?;
        let path = dir.join("messages.redb");
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(dir.to_owned()),
            other => StoreError::Open {
                path: path.clone(),
                detail: other.to_string(),
            },
        })?;
        // Make both tables exist, so reads never meet a missing table.
        let txn = db.begin_write().map_err(io)?;
        txn.open_table(MESSAGES).map_err(io)?;
        txn.open_table(IDS).map_err(io)?;
        txn.commit().map_err(io)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let writer_db = Arc::clone(&db);
        let feed = broadcast::channel(FEED_BACKLOG).0;
        let writer_feed = feed.clone();
        let handle = std::thread::Builder::new()
            .name("hearsay-store".into())
            .spawn(move || write_loop(&writer_db, rx, &writer_feed))
            .map_err(io)?;
        Ok(DiskStore {
            db,
            path,
            writer: Mutex::new(Some((tx, handle))),
            feed,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes every write waiting, commits them in one transaction, then acknowledges them all
/// and tells subscribers what was new.
fn write_loop(db: &Database, rx: mpsc::Receiver<Write>, feed: &broadcast::Sender<Arc<Message>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let result = commit_batch(db, &batch);
        for (i, w) in batch.into_iter().enumerate() {
            if matches!(&result, Ok(new) if new[i]) {
                let _ = feed.send(Arc::new(w.msg));
            }
            if let Some(ack) = w.ack {
                let _ = ack.send(match &result {
                    Ok(new) => Ok(new[i]),
                    Err(e) => Err(e.clone()),
                });
            }
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "store write failed");
        }
    }
}

fn commit_batch(db: &Database, batch: &[Write]) -> Result<Vec<bool>, StoreError> {
    let txn = db.begin_write().map_err(io)?;
    let mut new = Vec::with_capacity(batch.len());
    {
        let mut messages = txn.open_table(MESSAGES).map_err(io)?;
        let mut ids = txn.open_table(IDS).map_err(io)?;
        let mut next = messages
            .last()
            .map_err(io)?
            .map(|(k, _)| k.value() + 1)
            .unwrap_or(0);
        for w in batch {
            let key = *w.msg.id.as_bytes();
            if ids.get(key).map_err(io)?.is_some() {
                new.push(false);
                continue;
            }
            let json = serde_json::to_vec(&w.msg).map_err(io)?;
            messages.insert(next, json.as_slice()).map_err(io)?;
            ids.insert(key, (next, key_of(&w.msg).0)).map_err(io)?;
            next += 1;
            new.push(true);
        }
    }
    // redb's default durability: the commit returns once the data is fsync'd.
    txn.commit().map_err(io)?;
    Ok(new)
}

fn decode(bytes: &[u8]) -> Result<Message, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Io(format!("corrupt message record: {e}")))
}

impl Store for DiskStore {
    fn insert(&self, msg: Message, ack: Option<Ack>) {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match writer.as_ref() {
            Some((tx, _)) => {
                if let Err(mpsc::SendError(Write { ack: Some(ack), .. })) =
                    tx.send(Write { msg, ack })
                {
                    let _ = ack.send(Err(StoreError::Closed));
                }
            }
            None => {
                if let Some(ack) = ack {
                    let _ = ack.send(Err(StoreError::Closed));
                }
            }
        }
    }

    fn page(&self, after: Option<&MsgId>, limit: usize) -> Result<Vec<Message>, PageError> {
        let txn = self.db.begin_read().map_err(io)?;
        let messages = txn.open_table(MESSAGES).map_err(io)?;
        let start = match after {
            None => 0,
            Some(id) => {
                let ids = txn.open_table(IDS).map_err(io)?;
                ids.get(*id.as_bytes())
                    .map_err(io)?
                    .ok_or(PageError::UnknownAfter(*id))?
                    .value()
                    .0
                    + 1
            }
        };
        let mut out = Vec::new();
        for row in messages.range(start..).map_err(io)?.take(limit) {
            let (_, v) = row.map_err(io)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn recent(&self, n: usize) -> Result<Vec<Message>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let messages = txn.open_table(MESSAGES).map_err(io)?;
        let mut out = Vec::new();
        for row in messages.iter().map_err(io)?.rev().take(n) {
            let (_, v) = row.map_err(io)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn len(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        txn.open_table(MESSAGES).map_err(io)?.len().map_err(io)
    }

    fn keys(&self) -> Result<Vec<Key>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let ids = txn.open_table(IDS).map_err(io)?;
        let mut out = Vec::new();
        for row in ids.iter().map_err(io)? {
            let (k, v) = row.map_err(io)?;
            out.push((v.value().1, MsgId::from_bytes(k.value())));
        }
        Ok(out)
    }

    fn get_many(&self, wanted: &[MsgId]) -> Result<Vec<Message>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let ids = txn.open_table(IDS).map_err(io)?;
        let messages = txn.open_table(MESSAGES).map_err(io)?;
        let mut out = Vec::new();
        for id in wanted {
            if let Some(seq) = ids.get(*id.as_bytes()).map_err(io)?
                && let Some(v) = messages.get(seq.value().0).map_err(io)?
            {
                out.push(decode(v.value())?);
            }
        }
        Ok(out)
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.feed.subscribe()
    }

    fn close(&self) {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((tx, handle)) = writer {
            drop(tx);
            let _ = handle.join();
        }
    }
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// The default folder for a node on `port`: `$XDG_DATA_HOME/hearsay/node-PORT` on Linux.
pub fn default_dir(port: u16) -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("hearsay")
        .join(format!("node-{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearsay_proto::NodeId;

    fn msg(n: u64) -> Message {
        let origin = NodeId::from_bytes([1; 16]);
        let data = format!("m{n}");
        Message {
            id: MsgId::v2(&origin, n, n, &data),
            origin: origin.to_string(),
            seq: n,
            timestamp: n,
            data,
        }
    }

    async fn insert(store: &dyn Store, m: Message) -> bool {
        let (tx, rx) = oneshot::channel();
        store.insert(m, Some(tx));
        rx.await.unwrap().unwrap()
    }

    async fn pages_follow_insertion_order_and_skip_duplicates(s: &dyn Store) {
        for n in 0..5 {
            assert!(insert(s, msg(n)).await);
        }
        assert!(!insert(s, msg(2)).await);
        assert_eq!(s.len().unwrap(), 5);
        let first = s.page(None, 2).unwrap();
        assert_eq!(first, vec![msg(0), msg(1)]);
        let next = s.page(Some(&first[1].id), 10).unwrap();
        assert_eq!(next, vec![msg(2), msg(3), msg(4)]);
        assert!(s.page(Some(&msg(4).id), 10).unwrap().is_empty());
        assert_eq!(
            s.page(Some(&msg(9).id), 1),
            Err(PageError::UnknownAfter(msg(9).id))
        );
        assert_eq!(s.recent(2).unwrap(), vec![msg(4), msg(3)]);
        assert_eq!(s.keys().unwrap().len(), 5);
        assert_eq!(
            s.get_many(&[msg(3).id, msg(9).id, msg(1).id]).unwrap(),
            vec![msg(3), msg(1)]
        );
    }

    #[tokio::test]
    async fn memory_store_pages_and_dedups() {
        pages_follow_insertion_order_and_skip_duplicates(&MemoryStore::default()).await;
    }

    #[tokio::test]
    async fn disk_store_pages_dedups_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = DiskStore::open(dir.path()).unwrap();
            pages_follow_insertion_order_and_skip_duplicates(&s).await;
            // A second node on the same folder is refused while the first has it.
            assert_eq!(
                DiskStore::open(dir.path()).err(),
                Some(StoreError::InUse(dir.path().to_owned()))
            );
        }
        let s = DiskStore::open(dir.path()).unwrap();
        assert_eq!(s.len().unwrap(), 5);
        assert!(
            !insert(&s, msg(4)).await,
            "a message stored before the restart is not stored again"
        );
        assert!(insert(&s, msg(5)).await);
        assert_eq!(s.page(Some(&msg(4).id), 10).unwrap(), vec![msg(5)]);
    }

    #[tokio::test]
    async fn concurrent_writes_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(DiskStore::open(dir.path()).unwrap());
        let mut waits = Vec::new();
        for n in 0..200 {
            let (tx, rx) = oneshot::channel();
            s.insert(msg(n), Some(tx));
            waits.push(rx);
        }
        for w in waits {
            assert!(w.await.unwrap().unwrap());
        }
        assert_eq!(s.len().unwrap(), 200);
    }
}
