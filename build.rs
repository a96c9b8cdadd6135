//! `embed_migrations!` reads `migrations/` at compile time, but cargo only
//! knows to rebuild when Rust sources change: without this, a new or edited
//! migration would leave a binary that carries the old set.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
