//! Rebuild the node when the page (dist/, written by `scripts/build-web`) changes, so the embedded
//! copy is always the latest build.

fn main() {
    println!("cargo:rerun-if-changed=../dist");
}
