// `sqlx::migrate!` only tracks the migrations folder on nightly; rebuild when it changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
