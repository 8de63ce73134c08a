//! Snapshot tests of every screen and dialog, at 80×24 and 160×48, in
//! English and German, from the fixture mesh at a fixed time; plus the
//! too-small and no-colour cases.

use freimesh_proto::api::CreatedToken;
use freimesh_tui::app::{App, Connection, Mode, NodeAction, Pending, Screen, SortColumn};
use freimesh_tui::fixture::{self, NOW_MS};
use freimesh_tui::i18n::Lang;
use freimesh_tui::render;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];
const LANGS: [(Lang, &str); 2] = [(Lang::En, "en"), (Lang::De, "de")];

fn render(app: &App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal
        .draw(|frame| render::draw(frame, app, NOW_MS))
        .expect("draw");
    terminal.backend().buffer().clone()
}

fn text(buffer: &Buffer) -> String {
    let width = usize::from(buffer.area.width);
    buffer
        .content()
        .chunks(width)
        .map(|row| {
            let line: String = row.iter().map(|cell| cell.symbol()).collect();
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Snapshots `make(lang)` at both sizes in both languages.
fn snap_all(name: &str, make: impl Fn(Lang) -> App) {
    for (lang, code) in LANGS {
        let app = make(lang);
        for (w, h) in SIZES {
            let screen = text(&render(&app, w, h));
            insta::assert_snapshot!(format!("{name}_{code}_{w}x{h}"), screen);
        }
    }
}

#[test]
fn overview() {
    snap_all("overview", |l| fixture::app(l, Screen::Overview));
}

#[test]
fn nodes() {
    snap_all("nodes", |l| fixture::app(l, Screen::Nodes));
}

#[test]
fn nodes_filtered_and_sorted() {
    snap_all("nodes_filtered", |l| {
        let mut app = fixture::app(l, Screen::Nodes);
        app.filter = "e".into();
        app.mode = Mode::Filter;
        app.sort_desc = true;
        app.node_sel = 0;
        app
    });
}

#[test]
fn nodes_sorted_by_memory() {
    // Wide: the telemetry columns show; narrow: the title still names the sort.
    snap_all("nodes_sorted_memory", |l| {
        let mut app = fixture::app(l, Screen::Nodes);
        app.sort = SortColumn::Memory;
        app.sort_desc = true;
        app.node_sel = 0;
        app
    });
}

#[test]
fn nodes_filtered_by_agent_version() {
    snap_all("nodes_filtered_version", |l| {
        let mut app = fixture::app(l, Screen::Nodes);
        app.filter = "v:0.2".into();
        app.sort = SortColumn::Agent;
        app.node_sel = 0;
        app
    });
}

#[test]
fn node_detail_without_telemetry() {
    // freibad never reported: every telemetry value reads "–".
    snap_all("detail_no_telemetry", |l| {
        let mut app = fixture::app(l, Screen::Detail);
        let mut detail = fixture::detail();
        detail.node = fixture::nodes().remove(5);
        detail.node.telemetry.first_seen_ms = None;
        detail.links.clear();
        detail.traffic.clear();
        detail.routes.clear();
        detail.events.clear();
        app.detail_id = Some(detail.node.id);
        app.apply(freimesh_tui::app::Update::Detail(detail));
        app
    });
}

#[test]
fn telemetry_never_reads_nan_or_year_one() {
    for (lang, _) in LANGS {
        for (id, screen) in [(1, Screen::Detail), (6, Screen::Detail), (1, Screen::Nodes)] {
            let mut app = fixture::app(lang, screen);
            let mut detail = fixture::detail();
            detail.node = fixture::nodes().remove(id - 1);
            app.detail_id = Some(detail.node.id);
            app.apply(freimesh_tui::app::Update::Detail(detail));
            let screen = text(&render(&app, 160, 48));
            for bad in ["NaN", "inf", "0001-", "1970-"] {
                assert!(!screen.contains(bad), "{bad} in\n{screen}");
            }
        }
    }
}

#[test]
fn fleet_alerts_are_coloured_as_warnings() {
    let app = fixture::app(Lang::En, Screen::Overview);
    let buffer = render(&app, 160, 48);
    let screen = text(&buffer);
    for (needle, what) in [
        ("low memory", "low-memory alert"),
        ("older than 0.3.0", "version-drift alert"),
    ] {
        let row = screen
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{what} shown"));
        let y = u16::try_from(row).expect("row fits");
        let x = screen
            .lines()
            .nth(row)
            .and_then(|l| l.find("WARNING"))
            .map(|b| {
                u16::try_from(screen.lines().nth(row).unwrap_or("")[..b].chars().count())
                    .expect("column fits")
            });
        let x = x.unwrap_or_else(|| panic!("{what} has a WARNING label"));
        assert_eq!(buffer[(x, y)].fg, Color::Yellow, "{what} in yellow");
    }
    // Low memory in the wide nodes table: the memory cell in red.
    let mut app = fixture::app(Lang::En, Screen::Nodes);
    app.node_sel = 0;
    let buffer = render(&app, 160, 48);
    let screen = text(&buffer);
    let row = screen
        .lines()
        .position(|l| l.contains("bibliothek"))
        .expect("bibliothek listed");
    let line = screen.lines().nth(row).expect("row");
    let x = line[..line.find("92 %").expect("memory shown")]
        .chars()
        .count();
    let cell = &buffer[(
        u16::try_from(x).expect("fits"),
        u16::try_from(row).expect("fits"),
    )];
    assert_eq!(cell.fg, Color::Red, "low memory in red");
}

#[test]
fn node_detail() {
    snap_all("detail", |l| fixture::app(l, Screen::Detail));
}

#[test]
fn links() {
    snap_all("links", |l| fixture::app(l, Screen::Links));
}

#[test]
fn gateways_empty() {
    snap_all("gateways", |l| fixture::app(l, Screen::Gateways));
}

#[test]
fn events() {
    snap_all("events", |l| fixture::app(l, Screen::Events));
}

#[test]
fn redundancy() {
    snap_all("redundancy", |l| fixture::app(l, Screen::Redundancy));
}

#[test]
fn help_overlay() {
    snap_all("help", |l| {
        let mut app = fixture::app(l, Screen::Nodes);
        app.mode = Mode::Help;
        app
    });
}

#[test]
fn confirm_drain() {
    snap_all("confirm_drain", |l| {
        let mut app = fixture::app(l, Screen::Nodes);
        app.mode = Mode::Confirm(Pending {
            action: NodeAction::Drain,
            node: 3,
            hostname: "bibliothek".into(),
        });
        app
    });
}

#[test]
fn confirm_revoke() {
    snap_all("confirm_revoke", |l| {
        let mut app = fixture::app(l, Screen::Nodes);
        app.mode = Mode::Confirm(Pending {
            action: NodeAction::Revoke,
            node: 3,
            hostname: "bibliothek".into(),
        });
        app
    });
}

#[test]
fn confirm_role_approve() {
    snap_all("confirm_role_approve", |l| {
        let mut app = fixture::app(l, Screen::Nodes);
        app.mode = Mode::Confirm(Pending {
            action: NodeAction::ApproveRole(freimesh_proto::api::Role::Gateway),
            node: 5,
            hostname: "jugendzentrum".into(),
        });
        app
    });
}

#[test]
fn token_dialogs() {
    snap_all("token_ttl", |l| {
        let mut app = fixture::app(l, Screen::Overview);
        app.mode = Mode::TokenTtl("7d".into());
        app
    });
    snap_all("token_shown", |l| {
        let mut app = fixture::app(l, Screen::Overview);
        app.mode = Mode::TokenShown(CreatedToken {
            token: "fmj1_4kQ9zV2mP8xR7tL3wN6bY0cH5sD1fG".into(),
            id: "9f3a61c2d4e5b7a8".into(),
            expires_at_ms: NOW_MS + 86_400_000,
        });
        app
    });
}

#[test]
fn unreachable() {
    snap_all("unreachable", |l| {
        let mut app = fixture::app(l, Screen::Overview);
        app.connection = Connection::Unreachable {
            reason: "GET /overview: controller unreachable: Connection refused".into(),
            retry_at_ms: NOW_MS + 3_500,
        };
        app
    });
}

#[test]
fn loading_before_the_first_answer() {
    snap_all("loading", |l| App::new(l, true, "http://127.0.0.1:7780"));
}

#[test]
fn too_small() {
    for (lang, code) in LANGS {
        let app = fixture::app(lang, Screen::Nodes);
        for (w, h) in [(20, 5), (49, 24), (80, 9)] {
            let screen = text(&render(&app, w, h));
            insta::assert_snapshot!(format!("too_small_{code}_{w}x{h}"), screen);
        }
    }
}

#[test]
fn every_screen_survives_every_small_size() {
    // A resize must never panic, whatever the size.
    for screen in Screen::ALL {
        let mut app = fixture::app(Lang::De, screen);
        app.mode = Mode::Help;
        for w in [1, 2, 10, 20, 49, 50, 51, 63, 79] {
            for h in [1, 2, 5, 9, 10, 11, 13] {
                render(&app, w, h);
                app.mode = Mode::Normal;
                render(&app, w, h);
                app.mode = Mode::Help;
            }
        }
    }
}

#[test]
fn no_color_sets_no_colour_anywhere() {
    for screen in Screen::ALL {
        let mut app = fixture::app(Lang::En, screen);
        app.color = false;
        app.connection = Connection::Unreachable {
            reason: "x".into(),
            retry_at_ms: NOW_MS,
        };
        for mode in [Mode::Normal, Mode::Help] {
            app.mode = mode;
            let buffer = render(&app, 160, 48);
            for cell in buffer.content() {
                assert_eq!(
                    cell.fg,
                    Color::Reset,
                    "{screen:?}: colour at {:?}",
                    cell.symbol()
                );
                assert_eq!(
                    cell.bg,
                    Color::Reset,
                    "{screen:?}: colour at {:?}",
                    cell.symbol()
                );
            }
        }
    }
    // And with colour on, colours do appear (the check above can fail).
    let buffer = render(&fixture::app(Lang::En, Screen::Overview), 160, 48);
    assert!(
        buffer.content().iter().any(|c| c.fg == Color::Red),
        "critical alert in red"
    );
}

#[test]
fn selected_row_is_marked_without_colour() {
    let mut app = fixture::app(Lang::En, Screen::Nodes);
    app.color = false;
    let buffer = render(&app, 80, 24);
    let reversed = buffer
        .content()
        .iter()
        .filter(|c| c.modifier.contains(ratatui::style::Modifier::REVERSED))
        .count();
    assert!(
        reversed > 10,
        "selection and active tab are reversed ({reversed} cells)"
    );
}
