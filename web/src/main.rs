//! The page's entry point (built by scripts/build-web): mount the app.

fn main() {
    hearsay_web::run();
}
