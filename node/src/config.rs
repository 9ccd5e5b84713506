//! `hearsay --config FILE`: every setting in one TOML file, with the command line's flags
//! over it. The effective settings are logged at start and shown in `/api/status`.
//!
//! ```toml
//! port = 3000
//! host = "0.0.0.0"
//! advertise = "192.168.1.20"      # or a whole URL: "wss://nodes.example.org/hearsay"
//! data = "/var/lib/hearsay"
//! peers = ["ws://192.168.1.21:3000"]
//! v1_port = "off"              # or a port number
//! retention = "30d"            # d, h, min or s; "off" keeps everything
//! max_messages = 1000000       # the disk's safety net under the window: past either,
//! max_bytes = 1073741824       # the oldest go (bytes of message text)
//! allow_origins = ["https://app.example.org"]   # web apps that may write from a browser
//! allow_private_dials = false  # see the README's "Exposing a node"
//! tls_cert = "/etc/hearsay/cert.pem"  # serve HTTPS and WSS (with tls_key)
//! tls_key = "/etc/hearsay/key.pem"
//! tls_ca = ["/etc/hearsay/private-ca.pem"]  # roots trusted for wss:// dials, beside the web's
//! trust_proxy = ["127.0.0.1"]  # reverse proxies whose X-Forwarded-For names the client
//! proxy_header = "x-forwarded-for"  # or "forwarded": the one header those proxies set
//! host_names = ["hearsay.example.org"]  # names served besides the advertised host
//!
//! [limits]                     # burst, then per second (see the README)
//! page_messages = { burst = 100, per_second = 5 }
//! seed_messages = { burst = 100, per_second = 10 }
//! http_messages = { burst = 100, per_second = 10 }
//! peer_frames = { burst = 20000, per_second = 5000 }
//! peer_bytes = { burst = 33554432, per_second = 8388608 }
//! dials = { burst = 32, per_second = 4 }
//! origin_messages = { burst = 10000, per_second = 100 }
//! over_quota = { burst = 100, per_second = 1 }
//! peer_pulls = { burst = 16777216, per_second = 8388608 }  # bytes a peer may pull
//!
//! [connections]
//! max = 4096
//! max_per_address = 64
//! limit_loopback = false
//! per_kind = { nodes = 8, pages = 64, seeds = 8 }   # from one address
//! ```

use crate::cli::Args;
use hearsay_proto::Limits;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a file may set. Unknown keys are an error, so a typo is never silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub port: Option<u16>,
    pub host: Option<String>,
    pub advertise: Option<String>,
    pub data: Option<PathBuf>,
    pub peers: Option<Vec<String>>,
    pub v1_port: Option<V1PortSetting>,
    pub retention: Option<String>,
    pub max_messages: Option<usize>,
    pub max_bytes: Option<u64>,
    pub allow_origins: Option<Vec<String>>,
    pub allow_private_dials: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<Vec<PathBuf>>,
    pub trust_proxy: Option<Vec<String>>,
    pub proxy_header: Option<crate::door::ProxyHeader>,
    pub host_names: Option<Vec<String>>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub connections: Connections,
}

/// `v1_port = 3001` or `v1_port = "off"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum V1PortSetting {
    Port(u16),
    Word(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Connections {
    pub max: usize,
    pub max_per_address: usize,
    /// Apply per-address limits (HTTP publishing, connections) to loopback clients too.
    pub limit_loopback: bool,
    /// Connections of each kind one address may hold.
    pub per_kind: hearsay_proto::KindCaps,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            max: 4_096,
            max_per_address: 64,
            limit_loopback: false,
            per_kind: hearsay_proto::KindCaps::default(),
        }
    }
}

/// The settings a node runs with, after the file and the flags.
#[derive(Debug, Clone, Serialize)]
pub struct Effective {
    pub port: u16,
    pub host: String,
    pub advertise: Option<String>,
    pub data: Option<PathBuf>,
    pub peers: Vec<String>,
    /// A port number, or "off"; none means PORT+1.
    pub v1_port: Option<String>,
    /// How long messages are kept, as given (`30d`, `off`).
    pub retention: String,
    /// The same in milliseconds; `None` keeps everything.
    #[serde(skip)]
    pub retention_ms: Option<u64>,
    pub max_messages: usize,
    pub max_bytes: u64,
    /// Web apps that may write through this node from a browser.
    pub allow_origins: Vec<String>,
    pub allow_private_dials: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Vec<PathBuf>,
    pub trust_proxy: Vec<String>,
    pub proxy_header: crate::door::ProxyHeader,
    pub host_names: Vec<String>,
    pub limits: Limits,
    pub connections: Connections,
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("no port: give PORT on the command line or `port` in the config file")]
    NoPort,
    #[error("--peer {0:?} is not a ws:// or wss:// URL")]
    BadPeer(String),
    #[error("retention {0:?} is not a span: a number with d, h, min or s (30d, 12h), or off")]
    BadRetention(String),
    #[error("{0}")]
    BadOrigin(String),
}

/// `30d`, `12h`, `90min`, `45s` in milliseconds; `off` is `None`.
pub fn parse_span(text: &str) -> Result<Option<u64>, ConfigError> {
    let bad = || ConfigError::BadRetention(text.to_owned());
    let t = text.trim();
    if t == "off" {
        return Ok(None);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let size = match unit.trim() {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "min" | "m" => 60_000,
        "s" => 1_000,
        _ => return Err(bad()),
    };
    match n.checked_mul(size) {
        Some(ms) if ms > 0 => Ok(Some(ms)),
        _ => Err(bad()),
    }
}

pub fn load(path: &Path) -> Result<File, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The file's settings with the flags' over them (a flag given replaces the file's value;
/// `--peer` flags replace its `peers`).
pub fn effective(args: &Args, file: File) -> Result<Effective, ConfigError> {
    let port = args.port.or(file.port).ok_or(ConfigError::NoPort)?;
    let peers = if args.peers.is_empty() {
        file.peers.unwrap_or_default()
    } else {
        args.peers.clone()
    };
    if let Some(bad) = peers
        .iter()
        .find(|p| hearsay_proto::canonical_address(p).is_none())
    {
        return Err(ConfigError::BadPeer(bad.clone()));
    }
    let v1_port = args.v1_port.clone().or(file.v1_port.map(|v| match v {
        V1PortSetting::Port(p) => p.to_string(),
        V1PortSetting::Word(w) => w,
    }));
    let retention = args
        .retention
        .clone()
        .or(file.retention)
        .unwrap_or_else(|| "30d".to_owned());
    let retention_ms = parse_span(&retention)?;
    let allow_origins = if args.allow_origins.is_empty() {
        file.allow_origins.unwrap_or_default()
    } else {
        args.allow_origins.clone()
    };
    crate::origin::Origins::new(&allow_origins).map_err(ConfigError::BadOrigin)?;
    let defaults = hearsay_proto::History::default();
    Ok(Effective {
        retention,
        retention_ms,
        max_messages: file
            .max_messages
            .or(defaults.max_messages)
            .unwrap_or(usize::MAX),
        max_bytes: file.max_bytes.or(defaults.max_bytes).unwrap_or(u64::MAX),
        port,
        host: args
            .host
            .clone()
            .or(file.host)
            .unwrap_or_else(|| "127.0.0.1".to_owned()),
        advertise: args.advertise.clone().or(file.advertise),
        data: args.data.clone().or(file.data),
        peers,
        v1_port,
        allow_origins,
        allow_private_dials: args.allow_private_dials || file.allow_private_dials.unwrap_or(false),
        tls_cert: args.tls_cert.clone().or(file.tls_cert),
        tls_key: args.tls_key.clone().or(file.tls_key),
        tls_ca: if args.tls_ca.is_empty() {
            file.tls_ca.unwrap_or_default()
        } else {
            args.tls_ca.clone()
        },
        trust_proxy: if args.trust_proxies.is_empty() {
            file.trust_proxy.unwrap_or_default()
        } else {
            args.trust_proxies.clone()
        },
        proxy_header: args.proxy_header.or(file.proxy_header).unwrap_or_default(),
        host_names: if args.host_names.is_empty() {
            file.host_names.unwrap_or_default()
        } else {
            args.host_names.clone()
        },
        limits: file.limits,
        connections: file.connections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_example_settings_in_docs_are_valid() {
        let file: File = toml::from_str(include_str!("../../docs/hearsay.toml")).unwrap();
        assert_eq!(file.advertise.as_deref(), Some("wss://nodes.example.org"));
        assert_eq!(file.trust_proxy, Some(vec!["127.0.0.1".to_owned()]));
    }

    #[test]
    fn flags_override_the_file_and_unset_limits_keep_their_defaults() {
        let file: File = toml::from_str(
            r#"
            port = 4000
            host = "0.0.0.0"
            peers = ["ws://10.0.0.2:4000"]
            [limits]
            page_messages = { burst = 10, per_second = 1 }
            [connections]
            max_per_address = 8
            "#,
        )
        .unwrap();
        let args = Args::parse_from(["hearsay", "--peer", "ws://10.0.0.3:4000", "--config", "x"]);
        let e = effective(&args, file).unwrap();
        assert_eq!(e.port, 4000);
        assert_eq!(e.host, "0.0.0.0");
        assert_eq!(e.peers, ["ws://10.0.0.3:4000"]);
        assert_eq!(e.limits.page_messages.burst, 10.0);
        assert_eq!(e.limits.http_messages, Limits::default().http_messages);
        assert_eq!(e.connections.max_per_address, 8);
        assert_eq!(e.connections.max, 4_096);
        assert_eq!(e.retention, "30d");
        assert_eq!(e.retention_ms, Some(30 * 86_400_000));
        let file: File = toml::from_str(r#"retention = "12h""#).unwrap();
        let args = Args::parse_from(["hearsay", "3000"]);
        assert_eq!(
            effective(&args, file).unwrap().retention_ms,
            Some(12 * 3_600_000)
        );
        let file: File = toml::from_str(r#"retention = "12h""#).unwrap();
        let args = Args::parse_from(["hearsay", "3000", "--retention", "off"]);
        assert_eq!(effective(&args, file).unwrap().retention_ms, None);
    }

    #[test]
    fn a_typo_or_a_bad_peer_is_an_error_that_says_so() {
        let err = toml::from_str::<File>("prot = 3000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prot"), "{err}");
        let args = Args::parse_from(["hearsay", "3000", "--peer", "localhost:3000"]);
        let err = effective(&args, File::default()).unwrap_err().to_string();
        assert!(err.contains("localhost:3000"), "{err}");
        for bad in ["30", "30 days", "1.5d", "0s", "d"] {
            let args = Args::parse_from(["hearsay", "3000", "--retention", bad]);
            let err = effective(&args, File::default()).unwrap_err().to_string();
            assert!(err.starts_with("retention"), "{bad}: {err}");
        }
    }
}
