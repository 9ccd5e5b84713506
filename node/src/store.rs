//! Where delivered messages are kept: one small interface, [`Store`], with two
//! implementations — [`DiskStore`] (redb, the default) and [`MemoryStore`] (tests, demos).
//!
//! Writes are queued and acknowledged once durable. `DiskStore` has one writer thread that
//! takes every write waiting in its queue and commits them in one transaction (group commit):
//! a commit costs an fsync, so sixteen concurrent clients share one fsync instead of paying
//! sixteen. Reads run concurrently in their own read transactions.
//!
//! A write the disk fails is acknowledged as failed and its ids are sent on
//! [`Store::failures`], for the engine to forget (else it would believe them held and never
//! fetch them again); the database is then opened again, as redb refuses everything after an
//! I/O error until it is.
//!
//! Every message stored is also told, once durable and in the order stored, to whoever
//! subscribed ([`Store::subscribe`]): that is what `GET /api/stream` sends, so a client that
//! resumes from an event id finds that id in the store, unless it has since aged out of the
//! retention window ([`Store::evict`]; the id is then remembered as evicted, for a 410).
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
/// (Reconciliation timestamp, id) → (local sequence number, bytes of text): what ages out
/// first, first, and what the engine's index is built from at start.
const BY_TIME: TableDefinition<(u64, [u8; 16]), (u64, u64)> = TableDefinition::new("by_time");
/// Evicted ids, kept one more window so that a cursor naming one is told it was evicted (410)
/// rather than that it never was (404): id → timestamp, and the same by time to forget them.
const EVICTED: TableDefinition<[u8; 16], u64> = TableDefinition::new("evicted");
const EVICTED_BY_TIME: TableDefinition<(u64, [u8; 16]), ()> =
    TableDefinition::new("evicted_by_time");

/// The store's format: `format` → 4 once it holds only signed messages (and seed texts).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SIGNED_FORMAT: u64 = 4;

/// What redb may cache of the file in memory.
const CACHE_BYTES: usize = 16 << 20;

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
    #[error(
        "no message with id {0} (a cursor, `after` or `before`, must be an id this node holds)"
    )]
    UnknownCursor(MsgId),
    #[error(
        "message {0} is older than this network's retention window and was evicted; start from the oldest held (no cursor)"
    )]
    Evicted(MsgId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Told once a write is durable: `Ok(true)` if the message was new, `Ok(false)` if it was
/// already stored.
pub type Ack = oneshot::Sender<Result<bool, StoreError>>;

/// Told once an eviction is durable: how many messages it removed.
pub type Evicted = oneshot::Sender<Result<u64, StoreError>>;

/// The node's message history, in the order this node received it.
pub trait Store: Send + Sync {
    /// Queues `msg` for storage; `ack`, if given, is told once it is durable.
    fn insert(&self, msg: Message, ack: Option<Ack>);
    /// Up to `limit` messages following `after` (from the start when `None`), oldest first.
    fn page(&self, after: Option<&MsgId>, limit: usize) -> Result<Vec<Message>, PageError>;
    /// Up to `limit` messages preceding `before` (from the newest when `None`), newest
    /// first: how a reader starts at the end and goes back.
    fn page_back(&self, before: Option<&MsgId>, limit: usize) -> Result<Vec<Message>, PageError>;
    fn len(&self) -> Result<u64, StoreError>;
    fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
    /// The reconciliation key of every message held, with the bytes of its text, for the
    /// engine to know at start.
    fn keys(&self) -> Result<Vec<(Key, usize)>, StoreError>;
    /// The messages with these ids that are held (others are skipped).
    fn get_many(&self, ids: &[MsgId]) -> Result<Vec<Message>, StoreError>;
    /// Every message stored from now on, once durable, in the order stored.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Message>>;
    /// Queues the removal of every message stamped (by its reconciliation timestamp) before
    /// `before`, remembering their ids as evicted, and forgets evicted ids stamped before
    /// `forget_before`. `done`, if given, is told once durable.
    fn evict(&self, before: u64, forget_before: u64, done: Option<Evicted>);
    /// Just above the newest timestamp of the ids it remembers evicting: nothing older may
    /// be taken again (so a restart does not fetch back what the storage cap evicted).
    fn evicted_floor(&self) -> Result<Option<u64>, StoreError>;
    /// Finishes queued writes and releases the store.
    fn close(&self);
    /// Ids of messages whose write failed, once for whoever takes them (the driver, which
    /// has the engine forget them); `None` for a store whose writes cannot fail.
    fn failures(&self) -> Option<Failures> {
        None
    }
}

/// Messages in memory, lost on restart. Writes are "durable" at once.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<(Vec<Message>, HashMap<MsgId, usize>)>,
    /// Evicted ids and their timestamps.
    evicted: Mutex<HashMap<MsgId, u64>>,
    feed: broadcast::Sender<Arc<Message>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            evicted: Mutex::default(),
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
            Some(id) => self.position(&inner.1, id)? + 1,
        };
        Ok(inner.0.iter().skip(start).take(limit).cloned().collect())
    }

    fn page_back(&self, before: Option<&MsgId>, limit: usize) -> Result<Vec<Message>, PageError> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let end = match before {
            None => inner.0.len(),
            Some(id) => self.position(&inner.1, id)?,
        };
        Ok(inner.0[..end].iter().rev().take(limit).cloned().collect())
    }

    fn len(&self) -> Result<u64, StoreError> {
        Ok(self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.len() as u64)
    }

    fn keys(&self) -> Result<Vec<(Key, usize)>, StoreError> {
        Ok(self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .iter()
            .map(|m| (key_of(m), m.data.len()))
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

    fn evict(&self, before: u64, forget_before: u64, done: Option<Evicted>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut evicted = self.evicted.lock().unwrap_or_else(|p| p.into_inner());
        let (messages, position) = &mut *inner;
        let count = messages.len();
        messages.retain(|m| {
            let ts = key_of(m).0;
            let keep = ts >= before;
            if !keep {
                evicted.insert(m.id, ts);
            }
            keep
        });
        let count = (count - messages.len()) as u64;
        *position = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id, i))
            .collect();
        evicted.retain(|_, ts| *ts >= forget_before);
        if let Some(done) = done {
            let _ = done.send(Ok(count));
        }
    }

    fn evicted_floor(&self) -> Result<Option<u64>, StoreError> {
        let evicted = self.evicted.lock().unwrap_or_else(|p| p.into_inner());
        Ok(evicted.values().max().map(|ts| ts.saturating_add(1)))
    }

    fn close(&self) {}
}

impl MemoryStore {
    /// Where the message `id` sits in `positions`: a page's cursor.
    fn position(&self, positions: &HashMap<MsgId, usize>, id: &MsgId) -> Result<usize, PageError> {
        if let Some(&i) = positions.get(id) {
            return Ok(i);
        }
        let evicted = self.evicted.lock().unwrap_or_else(|p| p.into_inner());
        Err(if evicted.contains_key(id) {
            PageError::Evicted(*id)
        } else {
            PageError::UnknownCursor(*id)
        })
    }
}

/// What the writer thread is asked to do.
enum Job {
    Write {
        msg: Message,
        ack: Option<Ack>,
    },
    Evict {
        before: u64,
        forget_before: u64,
        done: Option<Evicted>,
    },
}

/// Messages in a redb file, written by one group-committing thread.
pub struct DiskStore {
    db: Arc<Db>,
    path: PathBuf,
    writer: Mutex<Option<(mpsc::Sender<Job>, std::thread::JoinHandle<()>)>>,
    feed: broadcast::Sender<Arc<Message>>,
    failures: Mutex<Option<Failures>>,
}

/// How the database is opened, and opened again after a failed write: the file itself
/// ([`DiskStore::open`]), or a redb database over another backend ([`DiskStore::open_with`];
/// the tests use one whose writes fail on demand).
pub type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// The open database, shared by the writer and the readers; empty while it is opened again.
struct Db {
    current: std::sync::RwLock<Option<Arc<Database>>>,
    opener: Opener,
    /// Held while the database is opened again, so that one thread does it.
    reopening: Mutex<()>,
}

/// How long a reopen waits for reads of the old database to finish.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Db {
    /// The open database; if a failed write left it closed, it is opened again first (by
    /// a reader too, so reads come back as soon as the disk does).
    fn get(&self) -> Result<Arc<Database>, StoreError> {
        if let Some(db) = self.current() {
            return Ok(db);
        }
        let _one = self.reopening.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = self.current() {
            return Ok(db);
        }
        let db = Arc::new((self.opener)().map_err(|e| {
            StoreError::Io(format!("the store is closed after a failed write: {e}"))
        })?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&db));
        Ok(db)
    }

    fn current(&self) -> Option<Arc<Database>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After an I/O error redb refuses every later operation (`PreviousIo`) until the
    /// database is closed, so a full disk that clears would leave the node unable to store
    /// anything until restarted: close it, once reads of it are done, and open it again.
    fn reopen(&self) -> Result<(), StoreError> {
        let _one = self.reopening.lock().unwrap_or_else(|p| p.into_inner());
        let old = self
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut old) = old {
            let deadline = std::time::Instant::now() + REOPEN_WAIT;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => break drop(db),
                    Err(shared) if std::time::Instant::now() < deadline => {
                        old = shared;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(shared) => {
                        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(shared);
                        return Err(StoreError::Io("reads of the store did not finish".into()));
                    }
                }
            }
        }
        let db = (self.opener)().map_err(io)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
        Ok(())
    }
}

/// Ids of messages whose write failed, batch by batch: the engine forgets them, so that they
/// are fetched again (see [`Store::failures`]).
pub type Failures = tokio::sync::mpsc::UnboundedReceiver<Vec<MsgId>>;

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

impl DiskStore {
    /// Opens (or creates) the store in folder `dir`.
    pub fn open(dir: &Path) -> Result<DiskStore, StoreError> {
        let path = dir.join("messages.redb");
        let file = path.clone();
        // redb caches up to 1 GiB of pages by default, and a node's memory would grow with
        // its history up to that; the operating system caches the file as well.
        Self::open_with(
            dir,
            Box::new(move || {
                Database::builder()
                    .set_cache_size(CACHE_BYTES)
                    .create(&file)
            }),
        )
    }

    /// Opens the store on the database `opener` makes (and makes again to reopen it after a
    /// failed write); `dir` is where `messages.redb` would be, named in errors.
    pub fn open_with(dir: &Path, opener: Opener) -> Result<DiskStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
            path: dir.to_owned(),
            detail: e.to_string(),
        })?;
        let path = dir.join("messages.redb");
        let db = opener().map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(dir.to_owned()),
            other => StoreError::Open {
                path: path.clone(),
                detail: other.to_string(),
            },
        })?;
        // Make every table exist, so reads never meet a missing table.
        let txn = db.begin_write().map_err(io)?;
        txn.open_table(MESSAGES).map_err(io)?;
        txn.open_table(IDS).map_err(io)?;
        txn.open_table(EVICTED).map_err(io)?;
        txn.open_table(EVICTED_BY_TIME).map_err(io)?;
        let dropped = signed_only(&txn)?;
        index_by_time(&txn)?;
        txn.commit().map_err(io)?;
        if dropped > 0 {
            tracing::warn!(
                dropped,
                path = %path.display(),
                "dropped messages stored before messages were signed (hearsay protocol 3 and older): their authors cannot be proven, and signed peers would refuse them; seed texts were kept"
            );
        }
        let db = Arc::new(Db {
            current: std::sync::RwLock::new(Some(Arc::new(db))),
            opener,
            reopening: Mutex::new(()),
        });
        let (tx, rx) = mpsc::channel();
        let writer_db = Arc::clone(&db);
        let feed = broadcast::channel(FEED_BACKLOG).0;
        let writer_feed = feed.clone();
        let (failed, failures) = tokio::sync::mpsc::unbounded_channel();
        let handle = std::thread::Builder::new()
            .name("hearsay-store".into())
            .spawn(move || write_loop(&writer_db, rx, &writer_feed, &failed))
            .map_err(io)?;
        Ok(DiskStore {
            db,
            path,
            writer: Mutex::new(Some((tx, handle))),
            feed,
            failures: Mutex::new(Some(failures)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A store written before messages were signed holds messages with an `origin` and no
/// signature. Their authors cannot be proven, and no signed peer would take them, so they
/// are dropped (and counted, for the log); seed texts, which are unsigned by nature, are
/// kept under the author `"v1"`. Runs once: the store then records its format.
fn signed_only(txn: &redb::WriteTransaction) -> Result<u64, StoreError> {
    #[derive(serde::Deserialize)]
    struct Legacy {
        id: MsgId,
        origin: String,
        timestamp: u64,
        data: String,
    }
    let mut meta = txn.open_table(META).map_err(io)?;
    if meta.get("format").map_err(io)?.map(|v| v.value()) == Some(SIGNED_FORMAT) {
        return Ok(0);
    }
    let mut messages = txn.open_table(MESSAGES).map_err(io)?;
    let mut ids = txn.open_table(IDS).map_err(io)?;
    let mut by_time = txn.open_table(BY_TIME).map_err(io)?;
    let mut dropped = 0;
    let mut rewrite = Vec::new();
    let mut drop = Vec::new();
    for row in messages.iter().map_err(io)? {
        let (seq, v) = row.map_err(io)?;
        if serde_json::from_slice::<Message>(v.value()).is_ok() {
            continue;
        }
        let legacy: Legacy = serde_json::from_slice(v.value())
            .map_err(|e| StoreError::Io(format!("corrupt message record: {e}")))?;
        if legacy.origin == "v1" && legacy.id == MsgId::v1(&legacy.data) {
            rewrite.push((
                seq.value(),
                Message::from_seed(legacy.data, legacy.timestamp),
            ));
        } else {
            drop.push((seq.value(), legacy.id));
        }
    }
    for (seq, msg) in rewrite {
        let json = serde_json::to_vec(&msg).map_err(io)?;
        messages.insert(seq, json.as_slice()).map_err(io)?;
    }
    for (seq, id) in drop {
        messages.remove(seq).map_err(io)?;
        if let Some((_, ts)) = ids.remove(*id.as_bytes()).map_err(io)?.map(|v| v.value()) {
            by_time.remove((ts, *id.as_bytes())).map_err(io)?;
        }
        dropped += 1;
    }
    meta.insert("format", SIGNED_FORMAT).map_err(io)?;
    Ok(dropped)
}

/// A store written before the time index existed gets one, and its seed texts (reconciled
/// under timestamp 0 then) their stamps rounded to the hour, as every node now keys them.
fn index_by_time(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut by_time = txn.open_table(BY_TIME).map_err(io)?;
    if !by_time.is_empty().map_err(io)? {
        return Ok(());
    }
    let messages = txn.open_table(MESSAGES).map_err(io)?;
    let mut ids = txn.open_table(IDS).map_err(io)?;
    for row in messages.iter().map_err(io)? {
        let (seq, v) = row.map_err(io)?;
        let msg = decode(v.value())?;
        let (ts, id) = key_of(&msg);
        ids.insert(*id.as_bytes(), (seq.value(), ts)).map_err(io)?;
        let bytes = msg.data.len() as u64;
        by_time
            .insert((ts, *id.as_bytes()), (seq.value(), bytes))
            .map_err(io)?;
    }
    Ok(())
}

/// Removes every message stamped before `before`, noting each id as evicted, and forgets
/// evicted ids stamped before `forget_before`.
fn evict_before(db: &Database, before: u64, forget_before: u64) -> Result<u64, StoreError> {
    let txn = db.begin_write().map_err(io)?;
    let mut count = 0;
    {
        let mut by_time = txn.open_table(BY_TIME).map_err(io)?;
        let mut ids = txn.open_table(IDS).map_err(io)?;
        let mut messages = txn.open_table(MESSAGES).map_err(io)?;
        let mut evicted = txn.open_table(EVICTED).map_err(io)?;
        let mut evicted_by_time = txn.open_table(EVICTED_BY_TIME).map_err(io)?;
        let aged: Vec<((u64, [u8; 16]), u64)> = by_time
            .range(..(before, [0u8; 16]))
            .map_err(io)?
            .map(|row| row.map(|(k, v)| (k.value(), v.value().0)))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        for ((ts, id), seq) in aged {
            by_time.remove((ts, id)).map_err(io)?;
            ids.remove(id).map_err(io)?;
            messages.remove(seq).map_err(io)?;
            evicted.insert(id, ts).map_err(io)?;
            evicted_by_time.insert((ts, id), ()).map_err(io)?;
            count += 1;
        }
        let forgotten: Vec<(u64, [u8; 16])> = evicted_by_time
            .range(..(forget_before, [0u8; 16]))
            .map_err(io)?
            .map(|row| row.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        for (ts, id) in forgotten {
            evicted_by_time.remove((ts, id)).map_err(io)?;
            evicted.remove(id).map_err(io)?;
        }
    }
    txn.commit().map_err(io)?;
    Ok(count)
}

/// Takes every write waiting, commits them in one transaction, then acknowledges them all
/// and tells subscribers what was new. An eviction runs in a transaction of its own, in turn.
///
/// A write that fails is acknowledged as failed, its ids are sent to `failed` (for the engine
/// to forget), and the database is opened again (see [`Db::reopen`]).
fn write_loop(
    db: &Db,
    rx: mpsc::Receiver<Job>,
    feed: &broadcast::Sender<Arc<Message>>,
    failed: &tokio::sync::mpsc::UnboundedSender<Vec<MsgId>>,
) {
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let first = match first {
            Job::Write { msg, ack } => Write { msg, ack },
            Job::Evict {
                before,
                forget_before,
                done,
            } => {
                let result = db
                    .get()
                    .and_then(|d| evict_before(&d, before, forget_before));
                if let Err(e) = &result {
                    tracing::error!(error = %e, "store eviction failed");
                    reopen(db);
                }
                if let Some(done) = done {
                    let _ = done.send(result);
                }
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Job::Write { msg, ack }) => batch.push(Write { msg, ack }),
                Ok(evict) => {
                    next = Some(evict);
                    break;
                }
                Err(_) => break,
            }
        }
        let result = db.get().and_then(|d| commit_batch(&d, &batch));
        if result.is_err() {
            let _ = failed.send(batch.iter().map(|w| w.msg.id).collect());
        }
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
            tracing::error!(error = %e, "store write failed; its messages will be fetched again");
            reopen(db);
        }
    }
}

fn reopen(db: &Db) {
    match db.reopen() {
        Ok(()) => tracing::info!("store reopened after a failed write"),
        Err(e) => {
            tracing::error!(error = %e, "store could not be reopened; trying at the next write")
        }
    }
}

struct Write {
    msg: Message,
    ack: Option<Ack>,
}

fn commit_batch(db: &Database, batch: &[Write]) -> Result<Vec<bool>, StoreError> {
    let txn = db.begin_write().map_err(io)?;
    let mut new = Vec::with_capacity(batch.len());
    {
        let mut messages = txn.open_table(MESSAGES).map_err(io)?;
        let mut ids = txn.open_table(IDS).map_err(io)?;
        let mut by_time = txn.open_table(BY_TIME).map_err(io)?;
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
            let ts = key_of(&w.msg).0;
            messages.insert(next, json.as_slice()).map_err(io)?;
            ids.insert(key, (next, ts)).map_err(io)?;
            let bytes = w.msg.data.len() as u64;
            by_time.insert((ts, key), (next, bytes)).map_err(io)?;
            next += 1;
            new.push(true);
        }
    }
    // redb's default durability: the commit returns once the data is fsync'd.
    txn.commit().map_err(io)?;
    Ok(new)
}

/// Where the message `id` sits in the order stored: a page's cursor.
fn position(txn: &redb::ReadTransaction, id: &MsgId) -> Result<u64, PageError> {
    let ids = txn.open_table(IDS).map_err(io)?;
    if let Some(v) = ids.get(*id.as_bytes()).map_err(io)? {
        return Ok(v.value().0);
    }
    let evicted = txn.open_table(EVICTED).map_err(io)?;
    Err(if evicted.get(*id.as_bytes()).map_err(io)?.is_some() {
        PageError::Evicted(*id)
    } else {
        PageError::UnknownCursor(*id)
    })
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
                if let Err(mpsc::SendError(Job::Write { ack: Some(ack), .. })) =
                    tx.send(Job::Write { msg, ack })
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
        // The database is held until the read is done, so a reopen waits for it.
        let db = self.db.get()?;
        let txn = db.begin_read().map_err(io)?;
        let messages = txn.open_table(MESSAGES).map_err(io)?;
        let start = match after {
            None => 0,
            Some(id) => position(&txn, id)? + 1,
        };
        let mut out = Vec::new();
        for row in messages.range(start..).map_err(io)?.take(limit) {
            let (_, v) = row.map_err(io)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn page_back(&self, before: Option<&MsgId>, limit: usize) -> Result<Vec<Message>, PageError> {
        // The database is held until the read is done, so a reopen waits for it.
        let db = self.db.get()?;
        let txn = db.begin_read().map_err(io)?;
        let messages = txn.open_table(MESSAGES).map_err(io)?;
        let end = match before {
            None => u64::MAX,
            Some(id) => position(&txn, id)?,
        };
        let mut out = Vec::new();
        for row in messages.range(..end).map_err(io)?.rev().take(limit) {
            let (_, v) = row.map_err(io)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn len(&self) -> Result<u64, StoreError> {
        // The database is held until the read is done, so a reopen waits for it.
        let db = self.db.get()?;
        let txn = db.begin_read().map_err(io)?;
        txn.open_table(MESSAGES).map_err(io)?.len().map_err(io)
    }

    fn keys(&self) -> Result<Vec<(Key, usize)>, StoreError> {
        // The database is held until the read is done, so a reopen waits for it.
        let db = self.db.get()?;
        let txn = db.begin_read().map_err(io)?;
        let by_time = txn.open_table(BY_TIME).map_err(io)?;
        let mut out = Vec::new();
        for row in by_time.iter().map_err(io)? {
            let (k, v) = row.map_err(io)?;
            let (ts, id) = k.value();
            out.push(((ts, MsgId::from_bytes(id)), v.value().1 as usize));
        }
        Ok(out)
    }

    fn get_many(&self, wanted: &[MsgId]) -> Result<Vec<Message>, StoreError> {
        // The database is held until the read is done, so a reopen waits for it.
        let db = self.db.get()?;
        let txn = db.begin_read().map_err(io)?;
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

    fn evicted_floor(&self) -> Result<Option<u64>, StoreError> {
        // The database is held until the read is done, so a reopen waits for it.
        let db = self.db.get()?;
        let txn = db.begin_read().map_err(io)?;
        let evicted = txn.open_table(EVICTED_BY_TIME).map_err(io)?;
        Ok(evicted
            .last()
            .map_err(io)?
            .map(|(k, _)| k.value().0.saturating_add(1)))
    }

    fn evict(&self, before: u64, forget_before: u64, done: Option<Evicted>) {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let job = Job::Evict {
            before,
            forget_before,
            done,
        };
        let refused = match writer.as_ref() {
            Some((tx, _)) => tx.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        if let Some(Job::Evict { done: Some(d), .. }) = refused {
            let _ = d.send(Err(StoreError::Closed));
        }
    }

    fn failures(&self) -> Option<Failures> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
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
    use hearsay_proto::Keypair;

    fn msg(n: u64) -> Message {
        Message::signed(&Keypair::from_secret([1; 32]), n, n, format!("m{n}"))
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
            Err(PageError::UnknownCursor(msg(9).id))
        );
        // From the end, back: newest first.
        assert_eq!(s.page_back(None, 2).unwrap(), vec![msg(4), msg(3)]);
        assert_eq!(
            s.page_back(Some(&msg(3).id), 10).unwrap(),
            vec![msg(2), msg(1), msg(0)]
        );
        assert!(s.page_back(Some(&msg(0).id), 10).unwrap().is_empty());
        assert_eq!(
            s.page_back(Some(&msg(9).id), 1),
            Err(PageError::UnknownCursor(msg(9).id))
        );
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

    async fn evict(store: &dyn Store, before: u64, forget_before: u64) -> u64 {
        let (tx, rx) = oneshot::channel();
        store.evict(before, forget_before, Some(tx));
        rx.await.unwrap().unwrap()
    }

    /// Eviction by timestamp (not arrival order), with the evicted ids remembered until
    /// they are forgotten in turn.
    async fn evicts_by_timestamp_and_remembers_what_it_evicted(s: &dyn Store) {
        for n in [5, 1, 7, 3, 9] {
            assert!(insert(s, msg(n)).await);
        }
        assert_eq!(evict(s, 4, 0).await, 2);
        assert_eq!(s.page(None, 10).unwrap(), vec![msg(5), msg(7), msg(9)]);
        assert_eq!(s.keys().unwrap().len(), 3);
        assert_eq!(
            s.page(Some(&msg(3).id), 1),
            Err(PageError::Evicted(msg(3).id))
        );
        assert_eq!(s.page(Some(&msg(7).id), 1).unwrap(), vec![msg(9)]);
        assert_eq!(
            s.page_back(Some(&msg(9).id), 10).unwrap(),
            vec![msg(7), msg(5)]
        );
        assert_eq!(
            s.page_back(Some(&msg(3).id), 1),
            Err(PageError::Evicted(msg(3).id))
        );
        // Evicting again forgets ids stamped before 2: msg 1 is now unknown, msg 3 evicted.
        assert_eq!(evict(s, 6, 2).await, 1);
        assert_eq!(
            s.page(Some(&msg(1).id), 1),
            Err(PageError::UnknownCursor(msg(1).id))
        );
        assert_eq!(
            s.page(Some(&msg(3).id), 1),
            Err(PageError::Evicted(msg(3).id))
        );
        assert_eq!(
            s.page(Some(&msg(5).id), 1),
            Err(PageError::Evicted(msg(5).id))
        );
        assert_eq!(s.page(None, 10).unwrap(), vec![msg(7), msg(9)]);
        assert_eq!(s.evicted_floor().unwrap(), Some(6));
    }

    #[tokio::test]
    async fn memory_store_evicts_by_timestamp() {
        evicts_by_timestamp_and_remembers_what_it_evicted(&MemoryStore::default()).await;
    }

    #[tokio::test]
    async fn disk_store_evicts_by_timestamp_and_keeps_that_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = DiskStore::open(dir.path()).unwrap();
            evicts_by_timestamp_and_remembers_what_it_evicted(&s).await;
        }
        let s = DiskStore::open(dir.path()).unwrap();
        assert_eq!(s.page(None, 10).unwrap(), vec![msg(7), msg(9)]);
        assert_eq!(
            s.page(Some(&msg(3).id), 1),
            Err(PageError::Evicted(msg(3).id))
        );
    }

    /// A store written before the time index existed (seed texts keyed at 0) and before
    /// messages were signed: its unsigned messages are dropped, its seed texts kept (under
    /// the author "v1"), and it is indexed by time on opening, seed texts under their stamp
    /// rounded to the hour, and evicts like any other.
    #[tokio::test]
    async fn an_older_store_is_migrated_on_opening() {
        let dir = tempfile::tempdir().unwrap();
        let seed_text = Message::from_seed("from a seed".into(), 7_200_123);
        let legacy = |id: &MsgId, origin: &str, ts: u64, data: &str| {
            serde_json::json!({"id": id, "origin": origin, "seq": 0, "timestamp": ts, "data": data})
                .to_string()
        };
        let unsigned_id = MsgId::from_bytes([9; 16]);
        let rows = [
            (msg(5).id, serde_json::to_string(&msg(5)).unwrap(), 5),
            (
                seed_text.id,
                legacy(&seed_text.id, "v1", 7_200_123, "from a seed"),
                0,
            ),
            (
                unsigned_id,
                legacy(&unsigned_id, &"11".repeat(16), 6, "unsigned"),
                6,
            ),
        ];
        {
            let db = Database::create(dir.path().join("messages.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut messages = txn.open_table(MESSAGES).unwrap();
                let mut ids = txn.open_table(IDS).unwrap();
                for (seq, (id, json, old_key)) in rows.iter().enumerate() {
                    messages.insert(seq as u64, json.as_bytes()).unwrap();
                    ids.insert(*id.as_bytes(), (seq as u64, *old_key)).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let s = DiskStore::open(dir.path()).unwrap();
        let keys = s.keys().unwrap();
        assert_eq!(
            keys,
            vec![((5, msg(5).id), 2), ((7_200_000, seed_text.id), 11)]
        );
        assert_eq!(s.len().unwrap(), 2);
        assert_eq!(evict(&s, 100, 0).await, 1);
        assert_eq!(s.page(None, 10).unwrap(), vec![seed_text.clone()]);
        drop(s);
        // Once migrated, it opens as it is.
        let s = DiskStore::open(dir.path()).unwrap();
        assert_eq!(s.page(None, 10).unwrap(), vec![seed_text]);
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
