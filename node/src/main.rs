//! The `hearsay` binary: parse arguments, set up logging, bind, run until Ctrl-C.

use anyhow::Context;
use clap::Parser;
use hearsay::cli::{Args, Command, V1Port};
use hearsay::config;
use hearsay::server::{self, NodeConfig};
use std::io::Write;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Colour only for a person at a terminal, never escape codes in a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "hearsay=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // A node holds up to 2,000 pages beside its links, and a demo many nodes: more sockets
    // than the usual soft limit of 1,024 open files. Raised as far as the hard limit allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) => tracing::debug!(files, "open-file limit"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    match args.command {
        Some(Command::Demo(demo)) => return hearsay::demo::run(demo).await,
        Some(Command::Sim(sim)) => return hearsay::simulate::run(&sim),
        Some(Command::Key(key)) => return key_command(key),
        None => {}
    }
    let file = match &args.config {
        Some(path) => config::load(path).unwrap_or_else(|e| usage(&e)),
        None => config::File::default(),
    };
    let settings = config::effective(&args, file).unwrap_or_else(|e| usage(&e));
    let port = settings.port;
    let v1_port =
        V1Port::from_setting(settings.v1_port.as_deref(), port).unwrap_or_else(|e| usage(&e));
    let host = settings.host.clone();

    let listener = TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))?;
    let v1_listener = match v1_port {
        V1Port::Off => None,
        V1Port::At(port) => match TcpListener::bind((host.as_str(), port)).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(port, error = %e, "seed-compatible port unavailable; going on without it");
                None
            }
        },
    };

    let shutdown = CancellationToken::new();
    let port = listener.local_addr()?.port();
    let data = settings
        .data
        .clone()
        .unwrap_or_else(|| hearsay::store::default_dir(port));
    let mut shown = settings.clone();
    shown.port = port;
    shown.data = Some(data.clone());
    let shown = serde_json::to_value(&shown)?;
    tracing::info!(settings = %shown, "starting");
    let origins =
        hearsay::origin::Origins::new(&settings.allow_origins).map_err(|e| anyhow::anyhow!(e))?;
    let mut config = NodeConfig {
        allow_private_dials: settings.allow_private_dials,
        tls_cert: settings.tls_cert.clone(),
        tls_key: settings.tls_key,
        tls_ca: settings.tls_ca,
        trust_proxies: settings.trust_proxy,
        proxy_header: settings.proxy_header,
        host_names: settings.host_names,
        origins,
        peers: settings.peers,
        advertise_host: settings.advertise,
        data: Some(data.clone()),
        limit_loopback: settings.connections.limit_loopback,
        max_connections: settings.connections.max,
        max_connections_per_address: settings.connections.max_per_address,
        shown,
        ..NodeConfig::default()
    };
    config.engine.limits = settings.limits;
    config.engine.per_address = settings.connections.per_kind;
    config.engine.history.retention = settings.retention_ms;
    config.engine.history.max_messages = Some(settings.max_messages);
    config.engine.history.max_bytes = Some(settings.max_bytes);
    // Ctrl-C, or SIGTERM (what systemd and container runtimes send): stop cleanly, so the
    // store finishes its writes and closes its file. Listened for before the node starts:
    // a signal that came between the start and the first listen killed it outright (seen
    // under load, a node already linked).
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let node = server::start(listener, v1_listener, config, shutdown.clone())?;
    // Whoever started us may have stopped reading our output; that is no reason to stop.
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "hearsay node {} listening on {}://{}",
        node.id,
        if settings.tls_cert.is_some() {
            "https"
        } else {
            "http"
        },
        node.addr
    );
    let _ = writeln!(out, "messages kept in {}", data.display());
    if let Some(v1) = node.v1_addr {
        let _ = writeln!(out, "seed-compatible WebSocket port: ws://{v1}");
    }
    let _ = out.flush();

    tokio::select! {
        _ = int.recv() => tracing::info!("Ctrl-C: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = shutdown.cancelled() => {}
    }
    node.stop().await;
    Ok(())
}

/// A setting that cannot be used: said the way clap says it, with its exit status.
fn usage(e: &dyn std::fmt::Display) -> ! {
    eprintln!("error: {e}\n\nFor more information, try '--help'.");
    std::process::exit(2)
}

/// `hearsay key show|export|import`.
fn key_command(args: hearsay::cli::KeyArgs) -> anyhow::Result<()> {
    use hearsay::cli::KeyAction;
    use hearsay::keyfile;
    let dir = args
        .data
        .unwrap_or_else(|| hearsay::store::default_dir(args.port));
    let mut out = std::io::stdout();
    match args.action {
        KeyAction::Show => {
            let key = keyfile::load(&dir)?.public();
            writeln!(out, "key          {key}")?;
            writeln!(out, "fingerprint  {}", key.fingerprint())?;
            writeln!(out, "node id      {}", key.node_id())?;
            writeln!(out, "file         {}", keyfile::path(&dir).display())?;
        }
        KeyAction::Export => {
            let key = keyfile::load(&dir)?;
            writeln!(out, "{}", hex::encode(key.secret()))?;
        }
        KeyAction::Import { force } => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
            let key = keyfile::parse(&text, "standard input")?;
            keyfile::save(&dir, &key, force)?;
            writeln!(
                out,
                "imported key {} (node id {}) into {}",
                key.public().fingerprint(),
                key.public().node_id(),
                keyfile::path(&dir).display()
            )?;
        }
    }
    Ok(())
}
