//! The terminal loop: raw mode and the alternate screen, a panic hook that
//! restores the terminal before the message is printed, and the loop that
//! drains updates, draws, and turns keys into commands.

use std::io::{self, Stdout};
use std::path::PathBuf;
use std::sync::mpsc::channel;
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};

use crate::app::App;
use crate::client::{Client, ClientError};
use crate::i18n::Lang;
use crate::{render, worker};

/// How long the loop waits for a key before redrawing: the status bar's
/// retry countdown and fresh data show within this.
const TICK: Duration = Duration::from_millis(100);

/// What the binary hands to [`run`].
#[derive(Debug, Clone)]
pub struct Config {
    pub api: String,
    pub token: String,
    pub ca_cert: Option<PathBuf>,
    pub lang: Lang,
    /// False when `NO_COLOR` is set and non-empty.
    pub color: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("terminal: {0}")]
    Terminal(#[from] io::Error),
}

/// Runs the TUI until the operator quits.
pub fn run(config: Config) -> Result<(), RunError> {
    let client = Client::new(&config.api, &config.token, config.ca_cert.as_deref())?;
    let (updates_tx, updates) = channel();
    let commands = worker::spawn_refresher(client.clone(), updates_tx.clone(), config.lang)?;
    worker::spawn_stream(client, updates_tx, commands.clone())?;

    install_panic_hook();
    let mut terminal = enter()?;
    let mut app = App::new(config.lang, config.color, &config.api);
    let result = (|| -> io::Result<()> {
        while !app.quit {
            while let Ok(update) = updates.try_recv() {
                app.apply(update);
            }
            let now = worker::now_ms();
            terminal.draw(|frame| render::draw(frame, &app, now))?;
            if event::poll(TICK)?
                && let Event::Key(key) = event::read()?
                && key.kind == KeyEventKind::Press
                && let Some(command) = app.handle_key(key)
            {
                // The refresher only stops when we drop `commands`.
                let _ = commands.send(command);
            }
        }
        Ok(())
    })();
    restore();
    Ok(result?)
}

fn enter() -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
    enable_raw_mode()?;
    execute!(io::stdout(), EnterAlternateScreen)?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    terminal.hide_cursor()?;
    terminal.clear()?;
    Ok(terminal)
}

/// Leaves raw mode and the alternate screen; safe to call twice.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Restore first, or the message lands in the alternate screen and
        // vanishes, leaving a raw-mode shell behind.
        restore();
        previous(info);
    }));
}
