//! `editfeed serve`: runs the daemon until SIGTERM or SIGINT, then drains.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use editfeed::config::ServeConfig;
use editfeed::server::{serve, ServerState};

/// Arguments of `editfeed serve`; flags override the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML config file (see README for every key).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:50051.
    #[arg(long)]
    pub listen: Option<String>,
    /// A dataset to serve, as NAME=PATH; repeat for more.
    #[arg(long = "dataset", value_name = "NAME=URL")]
    pub datasets: Vec<String>,
    /// Worker threads (default: every core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Batches each stream prepares ahead of its client.
    #[arg(long)]
    pub prefetch: Option<usize>,
}

/// The configuration the file and flags give.
pub fn config_from(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            ServeConfig::from_toml(&path.display().to_string(), &text)?
        }
        None => ServeConfig::default(),
    };
    if let Some(l) = &args.listen {
        config.listen = l.clone();
    }
    if let Some(w) = args.workers {
        config.workers = w;
    }
    if let Some(p) = args.prefetch {
        config.prefetch_batches = p;
    }
    for d in &args.datasets {
        let (name, url) = d
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--dataset {d:?}: expected NAME=URL"))?;
        config.datasets.insert(name.to_string(), url.to_string());
    }
    config.validate()?;
    Ok(config)
}

/// Runs `editfeed serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = config_from(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let drain = Duration::from_secs(config.drain_seconds);
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let state = ServerState::new(config)?;
        let addr = listener.local_addr()?;
        for d in state.registry.all() {
            tracing::info!(dataset = %d.name, version = %d.dataset.manifest().version, "dataset loaded");
        }
        tracing::info!(%addr, workers = state.pool.workers(), "serving");
        println!("listening on {addr}");
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let server = serve(listener, state, stopped(stop.clone()));
        tokio::pin!(server);
        tokio::select! {
            r = &mut server => r?,
            _ = async { stopped(stop).await; tokio::time::sleep(drain).await } => {
                tracing::warn!(seconds = drain.as_secs(), "drain period over, closing open streams");
            }
        }
        tracing::info!("stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("sigterm: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("sigint: draining"),
    }
}
