// The web UI is embedded from frontend/dist (src/http/ui.rs): rebuild when it changes.
fn main() {
    println!("cargo:rerun-if-changed=../../frontend/dist");
}
