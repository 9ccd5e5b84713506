//! One component per file; each takes plain props and reports through `Callback`s.

pub mod app;
pub mod composer;
pub mod demo;
pub mod links;
pub mod map;
pub mod messages;
pub mod peers;
pub mod replay;

/// A short, readable form of a 32-digit id.
pub fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// Local wall-clock time of a timestamp, `HH:MM:SS`.
pub fn clock_time(ms: u64) -> String {
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    format!(
        "{:02}:{:02}:{:02}",
        d.get_hours(),
        d.get_minutes(),
        d.get_seconds()
    )
}
