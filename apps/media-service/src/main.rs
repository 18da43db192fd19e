//! media-service binary: parses and validates the configuration, then serves (default) or
//! dubs one input (`dub`).

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use media_service::access::ControlAccess;
use media_service::api::{router, AppState};
use media_service::config::{self, Cli, Command};
use media_service::manager::Manager;
use media_service::metrics::Metrics;
use media_service::policy::StreamPolicy;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

fn main() {
    // Before any thread starts (see media_service::memory).
    let arenas = media_service::memory::limit_arenas();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("media-service: {}", config::one_line_error(&e));
            std::process::exit(2);
        }
    };
    if cli.print_env_contract {
        match serde_json::to_string_pretty(&config::env_contract()) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("media-service: cannot encode the env contract: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if let Err(e) = cli.settings.validate() {
        eprintln!("media-service: {e}");
        std::process::exit(2);
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Some(n) = arenas {
        tracing::debug!(
            arenas = n,
            "malloc arenas capped (MALLOC_ARENA_MAX overrides); the heap is trimmed after each worker"
        );
    }
    if let Err(e) = gstreamer::init() {
        eprintln!("media-service: GStreamer failed to initialise: {e}");
        std::process::exit(1);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("media-service: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async move {
        match run(cli).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("media-service: {e:#}");
                1
            }
        }
    });
    // Safe to call once every pipeline is in NULL.
    unsafe { gstreamer::deinit() };
    std::process::exit(code);
}

fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
            _ = term.recv() => info!("SIGTERM: shutting down"),
        }
        t.cancel();
    });
    token
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let shutdown = shutdown_on_signals();
    let settings = cli.settings.clone();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Dub(args) => media_service::dub::run(settings, args, shutdown).await,
        Command::Serve => {
            // The control API's access mode and request policy, decided once; a
            // contradiction or a missing INPUT_DIR/OUTPUT_DIR is a configuration error.
            let access = match ControlAccess::decide(
                settings.control_api,
                settings.media_service_token.clone(),
                &settings.media_service_host,
            ) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("media-service: {e}");
                    return Ok(2);
                }
            };
            let policy = match StreamPolicy::from_settings(&settings) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("media-service: {e}");
                    return Ok(2);
                }
            };
            let metrics = Arc::new(Metrics::new());
            let manager = Manager::new(settings.clone(), metrics.clone(), shutdown.clone());
            let addr = bind_address(&settings.media_service_host, settings.media_service_port);
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("binding MEDIA_SERVICE_PORT on {addr}"))?;
            info!(
                %addr,
                sts = %settings.sts_service_url,
                media_server = %settings.mediamtx_host,
                delay_ms = settings.output_delay_ms(),
                fragment_ms = settings.fragment_ms(),
                boundaries = ?settings.fragment_boundaries,
                discovery = settings.discovery,
                max_streams = settings.max_streams,
                "media-service listening"
            );
            match &access {
                ControlAccess::Open => {
                    warn!(control_api = %access.describe(), "control API access")
                }
                _ => info!(control_api = %access.describe(), "control API access"),
            }
            info!(policy = %policy.describe(), "control API requests");
            if settings.discovery {
                tokio::spawn(manager.clone().discovery_loop());
            }
            let app = router(AppState {
                manager: manager.clone(),
                metrics,
                access: Arc::new(access),
                policy: Arc::new(policy),
            });
            let sd = shutdown.clone();
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { sd.cancelled().await })
                .await
                .context("HTTP server")?;
            manager.stop_all().await;
            info!("all workers stopped; bye");
            Ok(0)
        }
    }
}

/// `HOST:PORT`, with an IPv6 address in brackets (`::1` binds as `[::1]:PORT`).
fn bind_address(host: &str, port: u16) -> String {
    match host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]:{port}"),
        Err(_) => format!("{host}:{port}"),
    }
}
