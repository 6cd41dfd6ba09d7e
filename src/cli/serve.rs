//! `editfeed serve`: runs the daemon until SIGTERM or SIGINT, then drains and exits 0.
//! `editfeed config check FILE` validates a config file.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use editfeed::config::ServeConfig;
use editfeed::server::admin::serve_admin;
use editfeed::server::{serve, ServerState};

/// Arguments of `editfeed serve`; flags override the config file and `EDITFEED_*`
/// environment variables, which override the file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML config file (see README for every key).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:50051 (port 0: a free port, printed on the
    /// `listening on` line).
    #[arg(long)]
    pub listen: Option<String>,
    /// Address of the Admin service, e.g. 127.0.0.1:50052 (port 0: a free port, printed
    /// on the `admin listening on` line; a second daemon on one host needs another port).
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Folder for the persisted registry and reshard jobs.
    #[arg(long)]
    pub state_dir: Option<String>,
    /// A dataset to serve, as NAME=PATH; repeat for more.
    #[arg(long = "dataset", value_name = "NAME=URL")]
    pub datasets: Vec<String>,
    /// Worker threads (default: every core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Batches each stream prepares ahead of its client.
    #[arg(long)]
    pub prefetch: Option<usize>,
    /// Prometheus endpoint address (empty string disables it).
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Seconds to finish in-flight batches after SIGTERM.
    #[arg(long)]
    pub drain_seconds: Option<u64>,
}

/// `editfeed config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file (with EDITFEED_* overrides applied); names the bad key.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

fn read_config(path: Option<&PathBuf>) -> anyhow::Result<ServeConfig> {
    let (name, text) = match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            (p.display().to_string(), text)
        }
        None => ("(defaults)".to_string(), String::new()),
    };
    Ok(ServeConfig::from_toml_with_env(
        &name,
        &text,
        std::env::vars(),
    )?)
}

/// The configuration the file, environment and flags give.
pub fn config_from(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let mut config = read_config(args.config.as_ref())?;
    if let Some(l) = &args.listen {
        config.listen = l.clone();
    }
    if let Some(l) = &args.admin_listen {
        config.admin_listen = l.clone();
    }
    if let Some(d) = &args.state_dir {
        config.state_dir = d.clone();
    }
    if let Some(w) = args.workers {
        config.workers = w;
    }
    if let Some(p) = args.prefetch {
        config.prefetch_batches = p;
    }
    if let Some(m) = &args.metrics_listen {
        config.metrics_listen = m.clone();
    }
    if let Some(d) = args.drain_seconds {
        config.drain_seconds = d;
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

/// Runs `editfeed config`.
pub fn run_config(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Check { file } => {
            let config = read_config(Some(&file))?;
            config
                .validate()
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            println!(
                "{}: ok ({} datasets, listen {})",
                file.display(),
                config.datasets.len(),
                config.listen
            );
            Ok(())
        }
    }
}

/// Runs `editfeed serve`.
pub fn run(args: ServeArgs, log_override: Option<String>) -> anyhow::Result<()> {
    let config = config_from(&args)?;
    super::init_logging(
        &config.log_format,
        log_override.as_deref().unwrap_or(&config.log_level),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        if !config.metrics_listen.is_empty() {
            let addr: std::net::SocketAddr = config.metrics_listen.parse()?;
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .set_buckets(&editfeed::metrics::SECONDS_BUCKETS)?
                .install()
                .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
            editfeed::metrics::describe();
            tracing::info!(%addr, "metrics on /metrics");
        }
        let listener = bind(&config.listen, "listen", "listening on").await?;
        let admin_listener =
            bind(&config.admin_listen, "admin_listen", "admin listening on").await?;
        let addr = listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;
        let state = ServerState::unloaded(config)?;
        tracing::info!(%addr, %admin_addr, workers = state.pool.workers(), "serving (not ready until datasets load)");
        println!("listening on {addr}");
        println!("admin listening on {admin_addr}");
        // The Admin service ends with the daemon: open WatchJob streams do not hold up
        // the exit.
        let admin = tokio::spawn(serve_admin(
            admin_listener,
            state.clone(),
            std::future::pending(),
        ));
        let ready = state.clone();
        tokio::spawn(async move {
            ready.serving().await;
            // Harnesses wait for this line; health reports SERVING from here on.
            println!("ready");
        });
        let served = serve(listener, state, shutdown_signal()).await;
        admin.abort();
        served?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Binds a listener; a failure names the flag and the config key that set the address,
/// and an address in use says how a second daemon on the host gets a free port.
async fn bind(address: &str, key: &str, line: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let flag = key.replace('_', "-");
    tokio::net::TcpListener::bind(address).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "; another process (another daemon?) holds it: give this daemon another port, \
                 or port 0 (e.g. 127.0.0.1:0) for a free one, printed on the `{line}` line"
            )
        } else {
            String::new()
        };
        anyhow::anyhow!("cannot listen on {address} (--{flag}, config key {key}): {e}{hint}")
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
