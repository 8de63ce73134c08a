//! Shared code of freimesh's fuzz targets (`fuzz_targets/`): the engine
//! harness, the uci2toml harness and the seed generator
//! (`cargo run --example seeds`, see docs/fuzzing.md).

pub mod engine;
pub mod seeds;
pub mod uci;
