//! The `hearsay` binary: parse arguments, set up logging, bind, run until Ctrl-C.

use anyhow::Context;
use clap::Parser;
use hearsay::cli::{Args, Command, V1Port};
use hearsay::server::{self, NodeConfig};
use std::io::Write;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "hearsay=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match args.command {
        Some(Command::Demo(demo)) => return hearsay::demo::run(demo).await,
        Some(Command::Sim(sim)) => return hearsay::simulate::run(&sim),
        None => {}
    }
    let port = args.port.expect("clap requires PORT without a subcommand");
    let v1_port = args.v1_port(port).map_err(anyhow::Error::msg)?;

    let listener = TcpListener::bind((args.host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen on {}:{port}", args.host))?;
    let v1_listener = match v1_port {
        V1Port::Off => None,
        V1Port::At(port) => match TcpListener::bind((args.host.as_str(), port)).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(port, error = %e, "seed-compatible port unavailable; going on without it");
                None
            }
        },
    };

    let shutdown = CancellationToken::new();
    let port = listener.local_addr()?.port();
    let data = args
        .data
        .clone()
        .unwrap_or_else(|| hearsay::store::default_dir(port));
    let config = NodeConfig {
        peers: args.peers,
        advertise_host: args.advertise,
        data: Some(data.clone()),
        ..NodeConfig::default()
    };
    let node = server::start(listener, v1_listener, config, shutdown.clone())?;
    // Whoever started us may have stopped reading our output; that is no reason to stop.
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "hearsay node {} listening on http://{}",
        node.id, node.addr
    );
    let _ = writeln!(out, "messages kept in {}", data.display());
    if let Some(v1) = node.v1_addr {
        let _ = writeln!(out, "seed-compatible WebSocket port: ws://{v1}");
    }
    let _ = out.flush();

    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            r.context("cannot listen for Ctrl-C")?;
            tracing::info!("Ctrl-C: shutting down");
        }
        _ = shutdown.cancelled() => {}
    }
    node.stop().await;
    Ok(())
}
