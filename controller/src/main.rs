//! `freimesh-controller`: not yet implemented beyond `--version`.

fn main() -> std::process::ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--version" | "-V") => {
            println!("freimesh-controller {}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "freimesh-controller {}: the controller is not built yet; run agents in static mode (docs/agent-config.md)",
                env!("CARGO_PKG_VERSION")
            );
            std::process::ExitCode::FAILURE
        }
    }
}
