use std::process::ExitCode;

/// glibc's allocator showed up at ~8% of the token endpoint's profile, with
/// lock contention when one thread frees what another allocated (the writer
/// thread frees every queued audit record). mimalloc keeps per-thread heaps.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = tessera::cli::Cli::parse_args();
    tessera::cli::init_logging();
    match tessera::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
