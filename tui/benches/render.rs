//! One full frame of the nodes and links screens with 1,000 nodes and
//! 4,000 links (target: ≤ 16 ms per frame, one frame at 60 Hz).

use criterion::{Criterion, criterion_group, criterion_main};
use freimesh_tui::app::Screen;
use freimesh_tui::{fixture, render};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn frames(c: &mut Criterion) {
    let mut app = fixture::large(1_000, 4_000);
    for (name, screen) in [("nodes", Screen::Nodes), ("links", Screen::Links)] {
        app.screen = screen;
        for (w, h) in [(80, 24), (200, 60)] {
            let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
            c.bench_function(&format!("frame_{name}_1000n_4000l_{w}x{h}"), |b| {
                b.iter(|| {
                    terminal
                        .draw(|frame| render::draw(frame, &app, fixture::NOW_MS))
                        .expect("draw");
                });
            });
        }
    }
}

criterion_group!(benches, frames);
criterion_main!(benches);
