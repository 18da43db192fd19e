//! sts-service binary: parse and validate config, serve until SIGTERM/SIGINT.

use anyhow::Context as _;
use sts_service::config::{env_contract, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = Config::from_env_and_args();
    if cfg.print_env_contract {
        println!("{}", serde_json::to_string_pretty(&env_contract())?);
        return Ok(());
    }
    if let Err(e) = cfg.validate() {
        // One line naming the variable, the value and what is accepted.
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    sts_service::init_tracing(&cfg.log_level);
    let server = sts_service::start(cfg).await?;
    let stop = server.shutdown_handle();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "cannot install SIGTERM handler");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("signal received; shutting down gracefully");
        stop.cancel();
    });
    server
        .wait()
        .await
        .context("sts-service stopped with an error")
}
