//! `freimesh-tui`: not yet implemented beyond `--version`.

fn main() -> std::process::ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--version" | "-V") => {
            println!("freimesh-tui {}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "freimesh-tui {}: the fleet view needs the controller, which is not built yet",
                env!("CARGO_PKG_VERSION")
            );
            std::process::ExitCode::FAILURE
        }
    }
}
