//! `freimesh-tui`: parses arguments and runs the fleet view.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use freimesh_tui::i18n::Lang;

/// The operators' fleet view of a freimesh controller.
#[derive(Debug, Parser)]
#[command(name = "freimesh-tui", version, about)]
struct Args {
    /// The controller's admin API.
    #[arg(long, default_value = "http://127.0.0.1:7780")]
    api: String,
    /// Operator token (from `freimesh-controller operator add`); also read
    /// from FREIMESH_TOKEN.
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// File holding the operator token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for an https API.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Interface language; default from LC_ALL / LC_MESSAGES / LANG.
    #[arg(long, value_enum)]
    lang: Option<LangArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LangArg {
    De,
    En,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("freimesh-tui: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let token = match (args.token, args.token_file) {
        (Some(token), _) => token,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .with_context(|| format!("reading the token file {}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => std::env::var("FREIMESH_TOKEN").unwrap_or_default(),
    };
    if token.is_empty() {
        // Bad arguments exit with 2, like clap's own errors.
        eprintln!(
            "freimesh-tui: no operator token: pass --token, --token-file or set FREIMESH_TOKEN \
             (create one with `freimesh-controller operator add NAME`)"
        );
        std::process::exit(2);
    }
    if !(args.api.starts_with("http://") || args.api.starts_with("https://")) {
        eprintln!(
            "freimesh-tui: --api must be an http:// or https:// URL, not {:?}",
            args.api
        );
        std::process::exit(2);
    }
    let lang = match args.lang {
        Some(LangArg::De) => Lang::De,
        Some(LangArg::En) => Lang::En,
        None => Lang::from_env(),
    };
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let config = freimesh_tui::Config {
        api: args.api,
        token,
        ca_cert: args.ca_cert,
        lang,
        color,
    };
    freimesh_tui::run(config).context("running the fleet view")
}
