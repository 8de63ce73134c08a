//! The node's identity: one X25519 static key, the same key WireGuard uses,
//! stored in WireGuard's base64 text form so `wg pubkey` and
//! `freimesh-agent pubkey` agree.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use boringtun::x25519::{PublicKey, StaticSecret};
use freimesh_proto::{KEY_LEN, KeyError, PublicKeyBytes, decode_key, encode_key};
use rand_core::OsRng;

/// Why a key could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("reading private key file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("writing private key file {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("private key file {path}: {cause}")]
    Decode { path: PathBuf, cause: KeyError },
    #[error("private key: {0}")]
    DecodeText(KeyError),
}

/// A node's private key. Its `Debug` never prints the key.
#[derive(Clone)]
pub struct PrivateKey([u8; KEY_LEN]);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey(public={})", self.public())
    }
}

impl PrivateKey {
    /// A fresh key from the operating system's random source, clamped as
    /// X25519 (and `wg genkey`) expects.
    pub fn generate() -> Self {
        let mut bytes = StaticSecret::random_from_rng(OsRng).to_bytes();
        // x25519-dalek clamps when it uses a key, not when it makes one;
        // WireGuard stores keys clamped, so do the same.
        bytes[0] &= 248;
        bytes[31] = (bytes[31] & 127) | 64;
        Self(bytes)
    }

    /// Parses WireGuard's base64 text form.
    pub fn from_base64(text: &str) -> Result<Self, IdentityError> {
        decode_key(text)
            .map(Self)
            .map_err(IdentityError::DecodeText)
    }

    pub fn to_base64(&self) -> String {
        encode_key(&self.0)
    }

    pub fn bytes(&self) -> [u8; KEY_LEN] {
        self.0
    }

    pub fn public(&self) -> PublicKeyBytes {
        PublicKeyBytes(PublicKey::from(&StaticSecret::from(self.0)).to_bytes())
    }

    /// Reads a key file. A key readable by group or others is used, with a
    /// warning, as `wg` does.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let text = fs::read_to_string(path).map_err(|cause| IdentityError::Read {
            path: path.to_owned(),
            cause,
        })?;
        if let Ok(meta) = fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "private key file is readable by others; chmod 600 it");
        }
        decode_key(&text)
            .map(Self)
            .map_err(|cause| IdentityError::Decode {
                path: path.to_owned(),
                cause,
            })
    }

    /// Reads the key file, or creates it (mode 0600) with a new key if it
    /// does not exist yet: what a router does on its first start.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        if path.exists() {
            return Self::load(path);
        }
        let key = Self::generate();
        key.write_new(path)?;
        tracing::info!(path = %path.display(), public = %key.public(), "generated a new node key");
        Ok(key)
    }

    /// Writes the key to a new file with mode 0600; never overwrites.
    ///
    /// Atomic: the key goes to a temporary file in the same directory
    /// (created 0600, so the key is never readable by others, not even for
    /// a moment), is flushed to disk, and only then gets its final name,
    /// by a hard link that fails if the name exists; the directory is
    /// flushed last. A power cut at any point leaves either no key file or
    /// a complete one, never an empty or truncated file that would stop
    /// the agent from starting (routers lose power). std only: a link and
    /// an unlink are all `tempfile`'s `persist_noclobber` would do, and the
    /// router binary is over its size budget.
    pub fn write_new(&self, path: &Path) -> Result<(), IdentityError> {
        let write_err = |cause| IdentityError::Write {
            path: path.to_owned(),
            cause,
        };
        let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(write_err)?;
                dir.to_owned()
            }
            None => PathBuf::from("."),
        };
        if path.exists() {
            return Err(write_err(std::io::Error::from(
                std::io::ErrorKind::AlreadyExists,
            )));
        }
        self.write_via(path, &temporary_path(path), &dir)
            .map_err(write_err)
    }

    /// Writes the key to `temp`, then links it as `path` (failing if that
    /// exists) and removes `temp`, then flushes `dir`.
    fn write_via(&self, path: &Path, temp: &Path, dir: &Path) -> std::io::Result<()> {
        // Nothing to clean up if this fails: the file is not ours.
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(temp)?;
        let result = writeln!(file, "{}", self.to_base64())
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::hard_link(temp, path));
        drop(file);
        // The temporary name goes whether the link worked or not.
        let removed = fs::remove_file(temp);
        result?;
        removed?;
        fs::File::open(dir)?.sync_all()
    }
}

/// A name next to `path` for writing it first: hidden, and unique to this
/// process and moment, so two writers never share one.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "key".into(), |n| n.to_string_lossy().into_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    path.with_file_name(format!(".{name}.tmp-{}-{nanos}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_and_match_wireguard_clamping() {
        let key = PrivateKey::generate();
        let bytes = key.bytes();
        assert_eq!(bytes[0] & 7, 0);
        assert_eq!(bytes[31] & 0xc0, 0x40);
        let again = PrivateKey::from_base64(&key.to_base64()).expect("round trip");
        assert_eq!(again.public(), key.public());
    }

    #[test]
    fn known_wireguard_vector() {
        // Pairs printed by wireguard-tools 1.0 (`wg genkey | tee /dev/stderr | wg pubkey`).
        for (private, public) in [
            (
                "YAnz6R5qf2RQxLzmfSe2JcOY5t5aTYsv8p1d6tnX/3Y=",
                "WYyN2aRm6etjAGp1eTM7xwYuyFcKU39L+DfVg6jbHw0=",
            ),
            (
                "OB0xrQqVWYfOiggP5QnnoHu5tlqL0GH3PdjWFNIoelc=",
                "Spq9f+WLmPeUqOHXiVoZXwhzh41riaaqKoMom6hGNA8=",
            ),
        ] {
            let key = PrivateKey::from_base64(private).expect("key");
            assert_eq!(key.public().to_base64(), public);
        }
    }

    #[test]
    fn load_or_create_writes_0600_and_reuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/private.key");
        let first = PrivateKey::load_or_create(&path).expect("create");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = PrivateKey::load_or_create(&path).expect("load");
        assert_eq!(first.public(), second.public());
        assert!(first.write_new(&path).is_err(), "never overwrites");
    }

    #[test]
    fn key_files_are_written_atomically_and_never_clobbered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("private.key");
        let key = PrivateKey::generate();
        key.write_new(&path).expect("write");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            PrivateKey::load(&path).expect("load").public(),
            key.public()
        );
        // Exactly one name in the directory: the temporary one is gone.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("private.key")]);
        // A pre-existing file is left exactly as it was, not truncated.
        let other = dir.path().join("other.key");
        fs::write(&other, "existing content\n").expect("write");
        let err = key.write_new(&other).expect_err("exists");
        assert!(err.to_string().contains("other.key"), "{err}");
        assert_eq!(
            fs::read_to_string(&other).expect("read"),
            "existing content\n"
        );
        // Someone else creates the name while we write: the final link
        // refuses to replace it, and our temporary file is cleaned up.
        let racing = dir.path().join("racing.key");
        fs::write(&racing, "theirs\n").expect("write");
        let temp = temporary_path(&racing);
        assert_eq!(temp.parent(), racing.parent(), "same directory");
        let err = key
            .write_via(&racing, &temp, dir.path())
            .expect_err("exists");
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&racing).expect("read"), "theirs\n");
        assert!(!temp.exists(), "temporary file removed");
        // A write that cannot even start leaves no key file, not an empty one.
        let never = dir.path().join("never.key");
        let occupied = dir.path().join("occupied");
        fs::create_dir(&occupied).expect("dir");
        assert!(key.write_via(&never, &occupied, dir.path()).is_err());
        assert!(!never.exists(), "no partial key file");
        assert!(occupied.is_dir(), "someone else's file left alone");
    }

    #[test]
    fn bad_key_file_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.key");
        fs::write(&path, "short").expect("write");
        let err = PrivateKey::load(&path).expect_err("bad key");
        assert!(err.to_string().contains("bad.key"), "{err}");
    }
}
