//! `sqlx::migrate!` embeds the migrations at compile time but does not tell cargo to watch their
//! directories, so a newly added migration file would be missing from the binary until something
//! else rebuilt this crate. This makes adding a file rebuild it.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations/postgres");
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
}
