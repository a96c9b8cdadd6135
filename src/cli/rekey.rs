//! `tessera keys new-master-key` and `tessera keys rekey`: replacing the
//! master key. They work on the configuration and database directly.
//!
//! The switch, with replicas serving throughout: make the new key; give
//! every replica the new key in TESSERA_MASTER_KEY and the old one in
//! TESSERA_PREVIOUS_MASTER_KEY (they open keys sealed under either and seal
//! new ones under the new key); run `tessera keys rekey` with the same two
//! variables; then drop TESSERA_PREVIOUS_MASTER_KEY.

use anyhow::Context;
use clap::Subcommand;

use super::ConfigArgs;
use super::local::open;

#[derive(Debug, Subcommand)]
pub enum MasterKeyCommand {
    /// Print a new master key for a re-key. It keys token digests like the
    /// current one, so issued secrets and tokens keep working.
    NewMasterKey(ConfigArgs),
    /// Re-seal every signing key (in one transaction), then every TOTP
    /// secret, under the master key (TESSERA_MASTER_KEY or
    /// keys.master_key_file), opening those sealed under the old one
    /// (TESSERA_PREVIOUS_MASTER_KEY).
    Rekey(ConfigArgs),
}

pub async fn run(command: MasterKeyCommand) -> anyhow::Result<()> {
    match command {
        MasterKeyCommand::NewMasterKey(args) => {
            let (_, master) = super::local::load(&args, Default::default())?;
            println!("{}", master.successor().to_base64().as_str());
            Ok(())
        }
        MasterKeyCommand::Rekey(args) => {
            let (_, store, master) = open(&args).await?;
            let done = crate::keys::rekey(&store, &master)
                .await
                .context("re-key failed")?;
            let totp = crate::accounts::totp::reseal_all(&store, &master)
                .await
                .context("re-sealing TOTP secrets failed (the signing keys are re-sealed)")?;
            println!(
                "{} signing key(s) and {totp} TOTP secret(s) sealed anew; every one is now \
                 sealed under master key {}",
                done.resealed, done.master_key_id
            );
            Ok(())
        }
    }
}
