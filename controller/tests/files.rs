//! Issue 12, item 5a (controller): the database, its `-wal` and `-shm`
//! files and the controller key are owner-only whatever the umask, the key
//! is written atomically, and a failed `init` leaves the directory as it
//! found it.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use freimesh_controller::admin::{self, ClientPool};
use freimesh_controller::store::Store;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn init(db: &Path, clients: Option<ClientPool>) -> Result<(), admin::AdminError> {
    admin::init_with_clients(
        db,
        "fd12:3456:789a::/48".parse().expect("ula"),
        "10.99.0.0/16".parse().expect("v4"),
        false,
        clients,
    )
    .map(|_| ())
}

/// Under the usual umask (022) SQLite would create 0644 files; the test
/// holds the store open so its -wal and -shm files exist.
#[test]
fn database_wal_shm_and_key_are_owner_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("mesh.db");
    init(&db, None).expect("init");
    let store = Store::open(&db).expect("open");
    admin::operator_add(&db, "city-it").expect("a write, so the WAL has content");
    store.settings().expect("settings");
    for name in ["mesh.db", "mesh.db-wal", "mesh.db-shm", "mesh.key"] {
        assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
    }
    // No temporary key file is left behind.
    assert_eq!(
        listing(dir.path()),
        ["mesh.db", "mesh.db-shm", "mesh.db-wal", "mesh.key"]
            .map(str::to_owned)
            .into()
    );
    drop(store);
}

#[test]
fn an_existing_world_readable_database_is_made_owner_only_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("mesh.db");
    init(&db, None).expect("init");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let _store = Store::open(&db).expect("open");
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn a_failed_init_leaves_the_directory_as_it_was_and_a_second_init_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("unrelated.txt"), "keep me").expect("unrelated file");
    let before = listing(dir.path());
    let db = dir.path().join("mesh.db");
    // The client pool is checked when the settings are committed, the last
    // step: the database and the key file exist by then.
    let bad_pool = ClientPool {
        ipv4: "10.100.0.0/16".parse().expect("pool"),
        subnet_len: 8,
    };
    let err = init(&db, Some(bad_pool)).expect_err("a subnet shorter than its pool");
    assert_eq!(listing(dir.path()), before, "after: {err}");

    init(&db, None).expect("a second init");
    assert!(Store::open(&db).expect("open").settings().is_ok());
    assert!(admin::load_key(&db).is_ok());
}

#[test]
fn init_over_an_existing_mesh_fails_and_removes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("mesh.db");
    init(&db, None).expect("init");
    let key = std::fs::read(admin::key_path(&db)).expect("key");
    let before = listing(dir.path());
    assert!(init(&db, None).is_err());
    assert_eq!(listing(dir.path()), before);
    assert_eq!(std::fs::read(admin::key_path(&db)).expect("key"), key);
    // A database whose key file is gone is not overwritten either: init
    // refuses because the settings exist, and keeps the database.
    std::fs::remove_file(admin::key_path(&db)).expect("rm key");
    assert!(init(&db, None).is_err());
    assert!(Store::open(&db).expect("open").settings().is_ok());
    assert!(
        !admin::key_path(&db).exists(),
        "no stray key for the old mesh"
    );
}

#[test]
fn the_key_file_is_never_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mesh.key");
    admin::write_key_file(&path, "first").expect("write");
    assert_eq!(mode(&path), 0o600);
    assert!(admin::write_key_file(&path, "second").is_err());
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "first\n");
    assert_eq!(listing(dir.path()), ["mesh.key".to_owned()].into());
}
