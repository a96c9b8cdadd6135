//! `embed_migrations!` reads each migration's SQL through `include_str!`, so
//! an edited migration already rebuilds the crate; a migration added,
//! removed or renamed does not, as no file rustc read has changed. This
//! makes cargo look at the whole `migrations/` directory.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
