//! The command line: `hearsay PORT [--peer WS_URL]... [--host ADDR]`.

use clap::Parser;
use hearsay_proto::Strategy;
use hearsay_proto::sim::{Attack, Geography, Senders, Topology};

const EXAMPLES: &str = "\
Examples:
  hearsay 3000
      Run a node: page and API at http://127.0.0.1:3000, WebSockets at ws://127.0.0.1:3000/ws
      (and at ws://127.0.0.1:3001 for seed nodes).
  hearsay 3002 --peer ws://127.0.0.1:3000
      Run a second node that joins the first. A chain of --peer flags becomes a mesh.
  curl 'http://127.0.0.1:3002/commit?msg=hello'
  curl -X POST -d '{\"data\":\"hello\"}' http://127.0.0.1:3002/api/messages
      Publish; every node gets it once.
  curl http://127.0.0.1:3000/api/messages
      Read the messages this node holds.
  hearsay 3004 --data /tmp/hearsay-3004
      Keep this node's messages in /tmp/hearsay-3004 (they survive restarts).
  hearsay 4000 --host 0.0.0.0 --advertise 192.168.1.20
      Listen on every interface and tell peers to dial 192.168.1.20.
  hearsay 3000 --advertise wss://nodes.example.org --trust-proxy 127.0.0.1
      Behind a reverse proxy that serves https://nodes.example.org (see docs/Caddyfile).
  hearsay 3000 --allow-origin https://app.example.org
      Let that web app publish through this node from its visitors' browsers (other sites
      get 403).
  hearsay --config /etc/hearsay.toml
      Take every setting and limit from a file (flags given as well override it); the
      settings in effect are logged at start and shown in /api/status.

Logs: RUST_LOG=hearsay=debug hearsay 3000";

/// `hearsay --version`: the release and the protocol it speaks (peers on another protocol
/// version are refused with a reason naming both).
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        format!(
            "{} (protocol {})",
            env!("CARGO_PKG_VERSION"),
            hearsay_proto::wire::PROTOCOL_VERSION
        )
    })
}

/// A peer-to-peer gossip node. Every node serves its web page and a JSON API, accepts
/// WebSocket peers on the same port, and speaks the seed network's protocol too.
#[derive(Debug, Parser)]
#[command(name = "hearsay", version = version(), after_help = EXAMPLES)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Port for HTTP and WebSockets (0 picks a free one). Required unless the config file
    /// sets `port`.
    pub port: Option<u16>,

    /// Settings file (TOML): every setting and limit; flags given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// A node to connect to and keep connected to, e.g. ws://127.0.0.1:3000 (repeatable).
    #[arg(long = "peer", value_name = "WS_URL")]
    pub peers: Vec<String>,

    /// Address to listen on (default: 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub host: Option<String>,

    /// Where other nodes should dial this one: a host name or IP (default: --host, or
    /// 127.0.0.1 for 0.0.0.0), or a whole URL such as wss://nodes.example.org/hearsay for a
    /// node behind a reverse proxy, or `none` for a node nobody can dial (behind NAT): it
    /// dials out only and still relays.
    #[arg(long, value_name = "HOST|URL|none")]
    pub advertise: Option<String>,

    /// Folder for this node's messages (default: $XDG_DATA_HOME/hearsay/node-PORT).
    #[arg(long, value_name = "DIR")]
    pub data: Option<std::path::PathBuf>,

    /// Seed-compatible WebSocket port: a number, or `off` (default: PORT+1).
    #[arg(long = "v1-port", value_name = "N|off")]
    pub v1_port: Option<String>,

    /// How long messages are kept, by their own timestamps: e.g. `30d` (the default), `12h`,
    /// or `off` to keep everything. Give every node of a network the same window; older
    /// messages are refused and evicted.
    #[arg(long, value_name = "SPAN|off")]
    pub retention: Option<String>,

    /// A web app that may publish through this node from a browser, e.g.
    /// https://app.example.org (repeatable). Other sites' pages are refused (403); curl and
    /// scripts, which send no Origin, are not affected.
    #[arg(long = "allow-origin", value_name = "URL")]
    pub allow_origins: Vec<String>,

    /// Let addresses learned from peers (and /add from other machines) be private or
    /// loopback ones even where this node's own address is not (link-local stays refused).
    #[arg(long)]
    pub allow_private_dials: bool,

    /// Serve HTTPS and WSS on PORT with this certificate chain (PEM); needs --tls-key. The
    /// node is then advertised as wss://.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key (PEM) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Also trust this CA's certificate (PEM) when dialing wss:// nodes, besides the public
    /// web roots built in (repeatable): for private networks.
    #[arg(long = "tls-ca", value_name = "FILE")]
    pub tls_ca: Vec<std::path::PathBuf>,

    /// A reverse proxy in front of this node, as an address or CIDR (repeatable): for
    /// requests from it, and only those, the client's address is taken from the header the
    /// proxy sets (--proxy-header), for every per-address limit and cap.
    #[arg(long = "trust-proxy", value_name = "CIDR")]
    pub trust_proxies: Vec<String>,

    /// Which header the --trust-proxy proxies name the client in: x-forwarded-for (the
    /// default: what Caddy and nginx set) or forwarded (RFC 7239). Only that one is read.
    #[arg(long = "proxy-header", value_name = "HEADER")]
    pub proxy_header: Option<crate::door::ProxyHeader>,

    /// Another name this node is served as (repeatable), besides the host it is advertised
    /// at: a request for any other name is refused (421), against DNS rebinding.
    #[arg(long = "host-name", value_name = "NAME")]
    pub host_names: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run a whole network in one process, to show it working.
    Demo(DemoArgs),
    /// Simulate a network on a virtual clock and print what broadcasting costs in it.
    Sim(SimArgs),
    /// Show, back up or restore a node's key (its identity: its id derives from it).
    Key(KeyArgs),
}

/// `hearsay key`.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub action: KeyAction,
    /// The node's data folder (default: that of the node on --port).
    #[arg(long, value_name = "DIR", global = true)]
    pub data: Option<std::path::PathBuf>,
    /// Which node's default folder, when --data is not given.
    #[arg(long, default_value_t = 3000, global = true)]
    pub port: u16,
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyAction {
    /// Print the public key, its fingerprint and the node id it gives.
    Show,
    /// Print the secret key (64 hex digits) for a backup. Keep it private: whoever has it
    /// can write as this node.
    Export,
    /// Restore a key from a backup: reads the 64 hex digits from standard input.
    Import {
        /// Replace a key the folder already holds (the node becomes another node).
        #[arg(long)]
        force: bool,
    },
}

const DEMO_EXAMPLES: &str = "\
Examples:
  hearsay demo
      Eight nodes linked at random, pages at http://127.0.0.1:3000, :3002, :3004, ...
  hearsay demo --nodes 5 --topology line --port 4000
      Five nodes in a line; open the first and last pages, send from one, watch it cross.
  hearsay demo --nodes 500
      Five hundred nodes in one process (about 12 open files each: it raises its own limit
      as far as the system lets it, and says so if that is not enough).

Each node has its own port (BASE, BASE+2, ...; the odd ports take seed-style WebSockets) and
its own store (redb, as any node's) in a temporary folder, removed on exit. The topology is
each node's first links (its --peer flags; full links every pair, so at most 50 nodes); from
there the nodes run the same membership as any network (HyParView: at most 6 neighbours
each, repaired when one leaves), so on the map a line or a star soon becomes a mesh. The
map draws those links, and in bold the broadcast tree that messages travel; a message lights
up hop by hop along it. Ctrl-C stops every node.";

/// Most nodes one demo runs: all in one process, on one machine's loopback. (Set here, where
/// the argument is parsed, so the command line does not reach into the demo it starts.)
pub const MAX_DEMO_NODES: u16 = 1_000;

/// `hearsay demo`.
#[derive(Debug, clap::Args)]
#[command(after_help = DEMO_EXAMPLES)]
pub struct DemoArgs {
    /// How many nodes (up to 1,000).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=MAX_DEMO_NODES as i64))]
    pub nodes: u16,

    /// How they are first linked: line, ring, star, random or full.
    #[arg(long, default_value = "random", value_parser = parse::<Topology>)]
    pub topology: Topology,

    /// The first node's port; node i gets BASE+2i (0: any free ports).
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
}

/// Parses a value whose `FromStr` error already says what was expected.
fn parse<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T, String> {
    s.parse()
}

const SIM_EXAMPLES: &str = "\
Examples:
  hearsay sim --nodes 1000 --messages 50
      A thousand nodes, fifty messages from random senders, ten a second.
  hearsay sim --nodes 1000 --strategy flood --json
      The same network flooding instead, as one JSON line.
  hearsay sim --nodes 500 --churn 0.2 --senders one
      A fifth of the nodes die halfway through.
  hearsay sim --nodes 1000 --adversaries 0.1 --attack withhold
      A tenth of the nodes relay nothing; the honest figures say what the rest saw.
  hearsay sim --nodes 1000 --adversaries 0.2 --attack eclipse --adversary-groups 50
      A fifth are sybils spread over 50 address groups, trying to fill honest views.
  hearsay sim --nodes 1000 --idle 600
      Ten quiet minutes first: the bytes each node sends a second to say nothing.

The run warms up until membership settles, publishes the messages, then runs until every
live node has every message (or a minute passes). Printed: the delivered ratio; RMR, the
payload copies beyond one per node reached; LDH, the hops to the farthest node; p50 and p99
of the time from publish to the last node; every frame and byte sent per delivery (map,
membership, keepalive and reconciliation included); and the wall time.

Attacks (each adversary an ordinary node whose frames are bent, from the start):
  withhold  relays no message, announcement or page
  beacon    signs its own rounds (low id, far, near and zero terms, handing over to
            itself) every 500 ms, and says every beacon it relays came straight from the root
  eclipse   names only adversaries in every peer list, and joins 6 honest nodes
  spam      pushes a message under a fresh key every 500 ms once publishing starts
  amplify   asks every peer every 500 ms for the newest message 256 times (WANT) and for
            its whole history (SYNC)
With adversaries, the honest figures (delivered ratio, p99, bytes per delivery) count only
honest nodes, and the adversaries' share of honest nodes' active and passive views is shown.";

/// `hearsay sim`.
#[derive(Debug, clap::Args)]
#[command(after_help = SIM_EXAMPLES)]
pub struct SimArgs {
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    #[arg(long, default_value_t = 50)]
    pub messages: usize,
    /// Link latency range in milliseconds, each link drawn from it.
    #[arg(long, default_value = "10..50", value_parser = latency)]
    pub latency: (u64, u64),
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Messages per second, network-wide.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Who publishes: one (node 0) or random.
    #[arg(long, default_value = "random", value_parser = parse::<Senders>)]
    pub senders: Senders,
    /// Fraction of the nodes killed halfway through the messages.
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// plumtree or flood.
    #[arg(long, default_value = "plumtree", value_parser = parse::<Strategy>)]
    pub strategy: Strategy,
    /// The nodes' first links: line, ring, star, random or full.
    #[arg(long, default_value = "random", value_parser = parse::<Topology>)]
    pub topology: Topology,
    /// Fraction of the nodes that are hostile (with --attack).
    #[arg(long, default_value_t = 0.0)]
    pub adversaries: f64,
    /// What the adversaries do: withhold, beacon, eclipse, spam or amplify.
    #[arg(long, value_parser = parse::<Attack>)]
    pub attack: Option<Attack>,
    /// Address groups the adversaries are spread over (IPv6 /48s of their own).
    #[arg(long, default_value_t = 1)]
    pub adversary_groups: usize,
    /// Seconds of virtual time after the warm-up with no message published: what each
    /// node sends to say nothing is reported (0: skipped).
    #[arg(long, default_value_t = 0)]
    pub idle: u64,
    /// Pages to open in the quiet window (each served by a node drawn at random): what a
    /// page is sent at rest is reported too. They close before the first message.
    #[arg(long, default_value_t = 0)]
    pub pages: usize,
    /// How far apart nodes are: pairs (each pair's latency drawn on its own) or plane (by
    /// their distance on a square, as on the internet nearby nodes share neighbours).
    #[arg(long, default_value = "pairs", value_parser = parse::<Geography>)]
    pub geography: Geography,
    /// Views as HyParView's alone: no node swaps a slow neighbour for a faster one (the
    /// baseline for latency-aware views).
    #[arg(long)]
    pub no_fast_links: bool,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn latency(s: &str) -> Result<(u64, u64), String> {
    let err = || format!("--latency takes MIN..MAX in milliseconds, like 10..50, got {s:?}");
    let (a, b) = s.split_once("..").ok_or_else(err)?;
    let (a, b): (u64, u64) = (a.parse().map_err(|_| err())?, b.parse().map_err(|_| err())?);
    if a > b {
        return Err(err());
    }
    Ok((a, b))
}

/// Where the seed-compatible port should go.
#[derive(Debug, PartialEq, Eq)]
pub enum V1Port {
    Off,
    At(u16),
}

impl V1Port {
    /// The seed-compatible port from its setting (`None`: PORT+1).
    pub fn from_setting(setting: Option<&str>, main_port: u16) -> Result<V1Port, String> {
        match setting {
            None => Ok(match main_port.checked_add(1) {
                Some(p) if main_port != 0 => V1Port::At(p),
                _ => V1Port::Off,
            }),
            Some("off") => Ok(V1Port::Off),
            Some(n) => n
                .parse()
                .map(V1Port::At)
                .map_err(|_| format!("--v1-port takes a port number or `off`, got {n:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_version_names_the_protocol() {
        let shown = Args::command().render_version();
        let want = format!(
            "hearsay {} (protocol {})",
            env!("CARGO_PKG_VERSION"),
            hearsay_proto::wire::PROTOCOL_VERSION
        );
        assert_eq!(shown.trim(), want);
    }
}
