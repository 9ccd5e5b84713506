//! The page's entry point (built by trunk): mount the app.

fn main() {
    hearsay_web::run();
}
