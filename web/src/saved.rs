//! The page's messages between visits, in the browser's IndexedDB (per origin, so per node).
//! localStorage would do for a few, but it is synchronous (every write blocks the page) and
//! capped near 5 MB; IndexedDB is neither.
//!
//! One database, `hearsay`, with one object store, `messages`. A message's key is its sync
//! timestamp as 16 hex digits followed by its id, so keys sort oldest first and what the
//! engine lets go (everything stamped before some time) is one key range to delete. The
//! value is the message as JSON text. Writes are queued in one transaction per engine
//! deadline and never awaited: a write that fails (a full disk) costs only the offline copy.

use hearsay_proto::Message;
use js_sys::{Array, Function, Promise};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbKeyRange, IdbObjectStore, IdbRequest, IdbTransactionMode};

const DB: &str = "hearsay";
const STORE: &str = "messages";

/// What earlier pages kept in localStorage (before IndexedDB): removed, to free the space.
const OLD_STORAGE_KEY: &str = "hearsay:messages";

/// The open database.
pub struct Saved {
    db: IdbDatabase,
}

/// `ts` as the start of a key: fixed width, so keys compare as times do.
fn stamp(ts: u64) -> String {
    format!("{ts:016x}")
}

fn key(m: &Message) -> String {
    format!("{}{}", stamp(hearsay_proto::sync::key_of(m).0), m.id)
}

/// Waits for a request to succeed and returns its result.
async fn finished(request: &IdbRequest) -> Result<JsValue, String> {
    let promise = Promise::new(&mut |resolve: Function, reject: Function| {
        let done = request.clone();
        request.set_onsuccess(Some(
            Closure::once_into_js(move || {
                let _ = resolve.call1(&JsValue::NULL, &done.result().unwrap_or_default());
            })
            .unchecked_ref(),
        ));
        let failed = request.clone();
        request.set_onerror(Some(
            Closure::once_into_js(move || {
                let why = failed
                    .error()
                    .ok()
                    .flatten()
                    .map_or("unknown error".to_owned(), |e| e.message());
                let _ = reject.call1(&JsValue::NULL, &why.into());
            })
            .unchecked_ref(),
        ));
    });
    JsFuture::from(promise)
        .await
        .map_err(|e| e.as_string().unwrap_or_default())
}

impl Saved {
    /// Opens (or creates) the database. Fails where the browser refuses storage (some
    /// private windows): the page then runs without an offline copy.
    pub async fn open() -> Result<Saved, String> {
        let window = web_sys::window().ok_or("no window")?;
        if let Ok(Some(old)) = window.local_storage() {
            let _ = old.remove_item(OLD_STORAGE_KEY);
        }
        let factory = window
            .indexed_db()
            .ok()
            .flatten()
            .ok_or("this browser has no IndexedDB here")?;
        let request = factory
            .open_with_u32(DB, 1)
            .map_err(|_| "IndexedDB refused")?;
        let upgrade = request.clone();
        request.set_onupgradeneeded(Some(
            Closure::once_into_js(move || {
                if let Ok(db) = upgrade.result().and_then(|r| r.dyn_into::<IdbDatabase>()) {
                    let _ = db.create_object_store(STORE);
                }
            })
            .unchecked_ref(),
        ));
        let db = finished(&request).await?;
        Ok(Saved {
            db: db.unchecked_into(),
        })
    }

    fn store(&self, mode: IdbTransactionMode) -> Option<IdbObjectStore> {
        self.db
            .transaction_with_str_and_mode(STORE, mode)
            .ok()?
            .object_store(STORE)
            .ok()
    }

    /// Every message kept; anything unreadable or whose id does not match is dropped. (They
    /// are this page's own copies, signatures checked when they arrived; a peer checks them
    /// again before taking any.)
    pub async fn load(&self) -> Vec<Message> {
        let Some(request) = self
            .store(IdbTransactionMode::Readonly)
            .and_then(|s| s.get_all().ok())
        else {
            return Vec::new();
        };
        let Ok(values) = finished(&request).await else {
            return Vec::new();
        };
        Array::from(&values)
            .iter()
            .filter_map(|v| serde_json::from_str::<Message>(&v.as_string()?).ok())
            .filter(Message::id_is_valid)
            .collect()
    }

    /// Keeps `messages`, and forgets everything stamped before `before`, in one transaction.
    pub fn write(&self, messages: &[Message], before: Option<u64>) {
        let Some(store) = self.store(IdbTransactionMode::Readwrite) else {
            return;
        };
        if let Some(before) = before
            && let Ok(range) = IdbKeyRange::upper_bound_with_open(&stamp(before).into(), true)
        {
            let _ = store.delete(&range);
        }
        for m in messages {
            if let Ok(text) = serde_json::to_string(m) {
                let _ = store.put_with_key(&text.into(), &key(m).into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_as_times_do() {
        assert!(stamp(0x0fff) < stamp(0x1000));
        assert!(stamp(u64::MAX - 1) < stamp(u64::MAX));
        // Everything stamped before `before` is below the bound; `before` itself is not.
        let before = 0x1234;
        assert!(format!("{}{}", stamp(before - 1), "ff".repeat(16)) < stamp(before));
        assert!(format!("{}{}", stamp(before), "00".repeat(16)) > stamp(before));
    }
}
