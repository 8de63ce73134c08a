//! Writes the seed corpora (`fuzz/corpus/<target>/seed-*`) from real encoded
//! messages and the repository's example configurations:
//! `cargo run --example seeds` in `fuzz/`.

fn main() -> std::io::Result<()> {
    freimesh_fuzz::seeds::write_all(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
}
