//! The node's key pair, kept in its data folder (`node.key`) for life: created on first
//! start, readable by the owner only (mode 0600), and what `hearsay key show|export|import`
//! works on. The file holds the 32-byte secret as 64 hex digits and a newline, so a backup
//! is one line a person can copy.

use hearsay_proto::Keypair;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const KEY_FILE: &str = "node.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key at {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("cannot write the key at {path}: {detail}")]
    Write { path: PathBuf, detail: String },
    #[error("{0}: a key is 64 hex digits (the secret, as `hearsay key export` prints it)")]
    Malformed(String),
    #[error(
        "{0} already holds a key; a node's id is its key, so replacing it makes it another node (add --force to replace it)"
    )]
    Exists(PathBuf),
    #[error("no key at {0} yet: a node creates it on first start")]
    Missing(PathBuf),
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(KEY_FILE)
}

/// The key in `text` (surrounding whitespace allowed).
pub fn parse(text: &str, source: &str) -> Result<Keypair, KeyError> {
    let text = text.trim();
    let mut secret = [0u8; 32];
    if text.len() != 64 || hex::decode_to_slice(text, &mut secret).is_err() {
        return Err(KeyError::Malformed(source.to_owned()));
    }
    Ok(Keypair::from_secret(secret))
}

/// The key in folder `dir`.
pub fn load(dir: &Path) -> Result<Keypair, KeyError> {
    let path = path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(KeyError::Missing(path)),
        Err(e) => Err(KeyError::Read {
            path,
            detail: e.to_string(),
        }),
    }
}

/// The key in folder `dir`, created there first if there is none. Says whether it is new.
pub fn load_or_create(dir: &Path) -> Result<(Keypair, bool), KeyError> {
    match load(dir) {
        Ok(key) => Ok((key, false)),
        Err(KeyError::Missing(_)) => {
            let key = Keypair::from_secret(rand::random());
            save(dir, &key, false)?;
            Ok((key, true))
        }
        Err(e) => Err(e),
    }
}

/// Writes `key` to folder `dir` (only the owner may read it), replacing one there only if
/// `force`. Written to a temporary file first and renamed, so a crash leaves the old key or
/// the new one, never half of one.
pub fn save(dir: &Path, key: &Keypair, force: bool) -> Result<(), KeyError> {
    let path = path(dir);
    let write_err = |e: std::io::Error| KeyError::Write {
        path: path.clone(),
        detail: e.to_string(),
    };
    if !force && path.exists() {
        return Err(KeyError::Exists(path));
    }
    std::fs::create_dir_all(dir).map_err(write_err)?;
    let tmp = dir.join(format!("{KEY_FILE}.tmp"));
    // A new file, so it is made with the owner-only mode (a leftover one, or a link
    // planted in its place, is removed first, not written through).
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(write_err)?;
    writeln!(file, "{}", hex::encode(key.secret())).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(write_err)?;
    // The rename itself made durable: after a power cut the node must find its key, not
    // quietly become another node.
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_kept_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let (key, created) = load_or_create(dir.path()).unwrap();
        assert!(created);
        let (again, created) = load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(again.public(), key.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            save(dir.path(), &Keypair::from_secret([1; 32]), false),
            Err(KeyError::Exists(_))
        ));
        save(dir.path(), &Keypair::from_secret([1; 32]), true).unwrap();
        assert_eq!(
            load(dir.path()).unwrap().public(),
            Keypair::from_secret([1; 32]).public()
        );
    }

    #[test]
    fn a_malformed_key_is_a_clear_error() {
        for bad in ["", "abc", &"zz".repeat(32), &"ab".repeat(33)] {
            assert!(matches!(parse(bad, "test"), Err(KeyError::Malformed(_))));
        }
        assert!(parse(&format!("  {}\n", "ab".repeat(32)), "test").is_ok());
    }
}
