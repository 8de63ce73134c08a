//! The controller's key file: where it lives, how it is written (atomically,
//! mode 0600) and read. Used by `init` and by the server at start.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use freimesh_proto::decode_key;

/// Why the key file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("controller key file {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("controller key file {path}: {message}")]
    Decode { path: PathBuf, message: String },
}

/// The controller's private key lives next to the database: `mesh.db` →
/// `mesh.key`, mode 0600.
pub fn key_path(db: &Path) -> PathBuf {
    db.with_extension("key")
}

/// Writes `text` to `path` so that `path` is either absent or complete:
/// a temporary file (mode 0600) in the same directory, written and synced,
/// linked to `path` (never replacing an existing file), then the directory
/// synced so the new name survives a power cut.
pub fn write_key_file(path: &Path, text: &str) -> Result<(), KeyFileError> {
    let key_err = |cause| KeyFileError::Io {
        path: path.to_owned(),
        cause,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // tempfile creates the file with mode 0600, whatever the umask.
    let mut tmp = tempfile::Builder::new()
        .prefix(".freimesh-key-")
        .tempfile_in(dir)
        .map_err(key_err)?;
    writeln!(tmp, "{text}").map_err(key_err)?;
    tmp.as_file().sync_all().map_err(key_err)?;
    tmp.persist_noclobber(path).map_err(|e| key_err(e.error))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(key_err)?;
    Ok(())
}

/// Reads the controller's private key.
pub fn load_key(db: &Path) -> Result<[u8; 32], KeyFileError> {
    let path = key_path(db);
    let text = fs::read_to_string(&path).map_err(|cause| KeyFileError::Io {
        path: path.clone(),
        cause,
    })?;
    decode_key(&text).map_err(|e| KeyFileError::Decode {
        path,
        message: e.to_string(),
    })
}
