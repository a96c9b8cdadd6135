//! `embed_migrations!` reads each migration's SQL through `include_str!`, so
//! an edited or removed migration rebuilds the crate already; a migration
//! added (or a `down.sql` or `metadata.toml` added to one) does not, as no
//! file rustc read has changed. This makes cargo look at the whole
//! `migrations/` directory.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
