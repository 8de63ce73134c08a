//! The state file on disk: an atomic write (a crash at any moment leaves
//! either the old file or the new one, never a mix) and a bounded read.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use freimesh_proto::{NodeId, PublicKeyBytes};

use super::format::{self, FormatError, NodeState, StateDigest};

/// A state file larger than this is refused before it is read: a city's
/// full route table (the session's bound, 262,144 entries) encodes to
/// well under it, and a 128 MB router must not read a runaway file.
pub const MAX_STATE_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// What went wrong with the state file, naming it.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("reading {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("writing {path}: {operation}: {cause}")]
    Write {
        path: PathBuf,
        operation: &'static str,
        cause: std::io::Error,
    },
    #[error("{path} is {size} bytes, more than the {MAX_STATE_FILE_BYTES} a state file may have")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{path}: {problem}")]
    Format { path: PathBuf, problem: FormatError },
    #[error("{path} belongs to node {found}, not to this node ({ours}): the key changed")]
    OtherNode {
        path: PathBuf,
        found: NodeId,
        ours: NodeId,
    },
    #[error(
        "{path} was written under controller key {found}, not the configured {configured}: another mesh"
    )]
    OtherController {
        path: PathBuf,
        found: PublicKeyBytes,
        configured: PublicKeyBytes,
    },
}

/// The state file as found at start-up.
#[derive(Debug)]
pub enum Loaded {
    /// No file: the first start (or the file was removed).
    Missing,
    /// A file of this node under this controller, and the digest of its
    /// bytes (what the saver compares new states with).
    Usable {
        state: Box<NodeState>,
        digest: StateDigest,
    },
    /// A file that cannot be used: the agent starts clean.
    Unusable(StateFileError),
}

/// Reads the state file at `path` and checks that it is this node's
/// (`node_key`) under the configured controller (`controller_key`).
pub fn load(path: &Path, node_key: &PublicKeyBytes, controller_key: &PublicKeyBytes) -> Loaded {
    let bytes = match read_bounded(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Loaded::Missing,
        Err(err) => return Loaded::Unusable(err),
    };
    let state = match format::decode(&bytes) {
        Ok(state) => state,
        Err(problem) => {
            return Loaded::Unusable(StateFileError::Format {
                path: path.to_owned(),
                problem,
            });
        }
    };
    if state.node_key != *node_key {
        return Loaded::Unusable(StateFileError::OtherNode {
            path: path.to_owned(),
            found: NodeId::of(&state.node_key),
            ours: NodeId::of(node_key),
        });
    }
    if state.controller_key != *controller_key {
        return Loaded::Unusable(StateFileError::OtherController {
            path: path.to_owned(),
            found: state.controller_key,
            configured: *controller_key,
        });
    }
    Loaded::Usable {
        digest: StateDigest::of(&bytes),
        state: Box::new(state),
    }
}

/// The file's bytes; `None` if it does not exist. Refuses a file past
/// [`MAX_STATE_FILE_BYTES`] before reading it (and one that grows past it
/// while being read).
fn read_bounded(path: &Path) -> Result<Option<Vec<u8>>, StateFileError> {
    let read_err = |cause| StateFileError::Read {
        path: path.to_owned(),
        cause,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(read_err(err)),
    };
    let size = file.metadata().map_err(read_err)?.len();
    let too_large = |size| StateFileError::TooLarge {
        path: path.to_owned(),
        size,
    };
    if size > MAX_STATE_FILE_BYTES {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_STATE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > MAX_STATE_FILE_BYTES {
        return Err(too_large(read));
    }
    Ok(Some(bytes))
}

/// The temporary file a write goes through: beside the state file, so the
/// rename stays within one file system (and is atomic).
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".to_owned());
    path.with_file_name(format!(".{name}.tmp"))
}

/// Replaces the file at `path` with `bytes` atomically: temporary file in
/// the same directory (mode 0600: it holds the node's credential), write,
/// fsync, rename over the old file, fsync the directory (so the rename
/// itself survives a power cut). A crash before the rename leaves the old
/// file in place; a stale temporary file is simply overwritten next time.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateFileError> {
    let write_err = |operation| {
        move |cause| StateFileError::Write {
            path: path.to_owned(),
            operation,
            cause,
        }
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(write_err("creating its directory"))?;
    let temporary = temporary_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(write_err("creating the temporary file"))?;
    file.write_all(bytes)
        .map_err(write_err("writing the temporary file"))?;
    file.sync_all()
        .map_err(write_err("syncing the temporary file"))?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(write_err("renaming the temporary file"))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_err("syncing its directory"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::statefile::format::tests::sample_state;

    fn usable(loaded: Loaded) -> NodeState {
        match loaded {
            Loaded::Usable { state, .. } => *state,
            other => panic!("not usable: {other:?}"),
        }
    }

    fn unusable(loaded: Loaded) -> String {
        match loaded {
            Loaded::Unusable(err) => err.to_string(),
            other => panic!("usable: {other:?}"),
        }
    }

    #[test]
    fn a_written_state_loads_back_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lib/freimesh/state");
        let state = sample_state();
        let bytes = format::encode(&state).expect("encode");
        write_atomic(&path, &bytes).expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        match load(&path, &state.node_key, &state.controller_key) {
            Loaded::Usable { state: got, digest } => {
                assert_eq!(*got, state);
                assert_eq!(digest, StateDigest::of(&bytes));
            }
            other => panic!("{other:?}"),
        }
        assert!(!temporary_path(&path).exists(), "renamed away");
    }

    #[test]
    fn a_crash_before_the_rename_leaves_the_old_file_valid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        let old = sample_state();
        write_atomic(&path, &format::encode(&old).expect("encode")).expect("write");
        // The crash: a new state half-written to the temporary file, never
        // renamed.
        let mut new = old.clone();
        new.routes.clear();
        let new_bytes = format::encode(&new).expect("encode");
        std::fs::write(temporary_path(&path), &new_bytes[..new_bytes.len() / 2]).expect("tmp");
        assert_eq!(usable(load(&path, &old.node_key, &old.controller_key)), old);
        // The next write goes over the leftover.
        write_atomic(&path, &new_bytes).expect("write");
        assert_eq!(usable(load(&path, &old.node_key, &old.controller_key)), new);
    }

    #[test]
    fn a_missing_file_is_a_first_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = sample_state();
        assert!(matches!(
            load(
                &dir.path().join("state"),
                &state.node_key,
                &state.controller_key
            ),
            Loaded::Missing
        ));
    }

    #[test]
    fn corrupt_truncated_foreign_and_oversized_files_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        let state = sample_state();
        let bytes = format::encode(&state).expect("encode");
        let (node, controller) = (state.node_key, state.controller_key);
        let shown = path.display().to_string();

        std::fs::write(&path, &bytes[..bytes.len() - 5]).expect("write");
        let message = unusable(load(&path, &node, &controller));
        assert!(
            message.starts_with(&shown) && message.contains("truncated"),
            "{message}"
        );

        let mut corrupt = bytes.clone();
        corrupt[40] ^= 0xff;
        std::fs::write(&path, &corrupt).expect("write");
        let message = unusable(load(&path, &node, &controller));
        assert!(message.contains("checksum mismatch"), "{message}");

        std::fs::write(&path, &bytes).expect("write");
        let message = unusable(load(&path, &PublicKeyBytes([7; 32]), &controller));
        assert!(message.contains("belongs to node"), "{message}");
        let message = unusable(load(&path, &node, &PublicKeyBytes([7; 32])));
        assert!(message.contains("another mesh"), "{message}");

        let big = File::create(&path).expect("create");
        big.set_len(MAX_STATE_FILE_BYTES + 1).expect("sparse file");
        let message = unusable(load(&path, &node, &controller));
        assert!(message.contains("more than the"), "{message}");
    }
}
