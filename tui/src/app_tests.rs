//! Tests of the key state machine, filtering and sorting.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::fixture;

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

fn ids(app: &App) -> Vec<u32> {
    app.visible_nodes().iter().map(|n| n.id).collect()
}

#[test]
fn drain_then_yes_drains_the_selected_node() {
    let mut app = fixture::app(Lang::En, Screen::Nodes);
    app.node_sel = 0;
    assert_eq!(app.handle_key(key(KeyCode::Down)), None);
    assert_eq!(app.handle_key(ch('d')), None);
    assert!(matches!(app.mode, Mode::Confirm(_)));
    assert_eq!(
        app.handle_key(ch('y')),
        Some(Command::Node {
            action: NodeAction::Drain,
            node: 2,
            hostname: "schule-nord".into()
        })
    );
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn no_cancels_and_other_keys_keep_asking() {
    let mut app = fixture::app(Lang::De, Screen::Nodes);
    app.handle_key(ch('r'));
    assert_eq!(app.handle_key(ch('x')), None);
    assert!(matches!(&app.mode, Mode::Confirm(p) if p.action == NodeAction::Revoke));
    assert_eq!(app.handle_key(ch('n')), None);
    assert_eq!(app.mode, Mode::Normal);
    // German "ja" confirms too.
    app.handle_key(ch('u'));
    assert!(matches!(
        app.handle_key(ch('j')),
        Some(Command::Node {
            action: NodeAction::Undrain,
            ..
        })
    ));
}

#[test]
fn actions_outside_node_screens_ask_for_a_node() {
    let mut app = fixture::app(Lang::En, Screen::Links);
    assert_eq!(app.handle_key(ch('a')), None);
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.status.as_ref().map(|s| s.ok), Some(false));
}

#[test]
fn detail_actions_target_the_shown_node() {
    let mut app = fixture::app(Lang::En, Screen::Nodes);
    app.node_sel = 3;
    assert_eq!(
        app.handle_key(key(KeyCode::Enter)),
        Some(Command::Watch(Some(4)))
    );
    assert_eq!(app.screen, Screen::Detail);
    app.handle_key(ch('a'));
    assert!(matches!(
        app.handle_key(ch('y')),
        Some(Command::Node {
            action: NodeAction::Approve,
            node: 4,
            ..
        })
    ));
    app.handle_key(key(KeyCode::Esc));
    assert_eq!(app.screen, Screen::Nodes);
}

#[test]
fn filter_matches_hostname_id_and_address() {
    let mut app = fixture::app(Lang::En, Screen::Nodes);
    app.handle_key(ch('/'));
    for c in "schule".chars() {
        app.handle_key(ch(c));
    }
    assert_eq!(ids(&app), vec![2]);
    app.handle_key(key(KeyCode::Enter));
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.filter, "schule");
    app.filter = "#5".into();
    assert_eq!(ids(&app), vec![5]);
    app.filter = "10.77.0.3".into();
    assert_eq!(ids(&app), vec![3]);
    app.filter = "FD00:1::7".into();
    assert_eq!(ids(&app), vec![7]);
    app.filter = "nothing-like-this".into();
    assert!(ids(&app).is_empty());
    // Esc in the filter clears it.
    app.handle_key(ch('/'));
    app.handle_key(key(KeyCode::Esc));
    assert_eq!(ids(&app).len(), 7);
}

#[test]
fn sort_cycles_columns_and_reverses() {
    let mut app = fixture::app(Lang::En, Screen::Nodes);
    assert_eq!(ids(&app), vec![1, 2, 3, 4, 5, 6, 7]);
    app.handle_key(ch('s'));
    assert_eq!(app.sort, SortColumn::Hostname);
    // altes-lager, bibliothek, feuerwache, freibad, jugendzentrum, rathaus, schule-nord
    assert_eq!(ids(&app), vec![7, 3, 4, 6, 5, 1, 2]);
    app.handle_key(ch('S'));
    assert_eq!(ids(&app), vec![2, 1, 5, 6, 4, 3, 7]);
    app.handle_key(ch('S'));
    app.handle_key(ch('s'));
    assert_eq!(app.sort, SortColumn::State);
    // pending, active (not drained), active drained, revoked
    assert_eq!(ids(&app), vec![6, 1, 2, 3, 5, 4, 7]);
    app.handle_key(ch('s'));
    // Offline first, by id within.
    assert_eq!(ids(&app), vec![5, 6, 7, 1, 2, 3, 4]);
    for _ in 0..4 {
        app.handle_key(ch('s'));
    }
    assert_eq!(app.sort, SortColumn::Agent);
    // No version reported first, then 0.2.1 < 0.2.4 < 0.3.0.
    assert_eq!(ids(&app), vec![6, 7, 5, 3, 4, 1, 2]);
    app.handle_key(ch('s'));
    assert_eq!(app.sort, SortColumn::Uptime);
    // Shortest uptime first: 47 min, 26 h, 3 d, 12 d, 40 d.
    assert_eq!(ids(&app), vec![6, 7, 4, 2, 1, 3, 5]);
    app.handle_key(ch('s'));
    assert_eq!(app.sort, SortColumn::Load);
    assert_eq!(ids(&app), vec![6, 7, 2, 4, 1, 3, 5]);
    app.handle_key(ch('s'));
    assert_eq!(app.sort, SortColumn::Memory);
    // Used: 29 %, 35 %, 44 %, 68 %, 92 %.
    assert_eq!(ids(&app), vec![6, 7, 2, 1, 4, 5, 3]);
    app.handle_key(ch('s'));
    assert_eq!(app.sort, SortColumn::Id);
}

#[test]
fn filter_by_agent_version_prefix_and_low_memory() {
    let mut app = fixture::app(Lang::En, Screen::Nodes);
    app.filter = "v:0.2".into();
    assert_eq!(ids(&app), vec![3, 4, 5]);
    app.filter = "V:0.2.1".into();
    assert_eq!(ids(&app), vec![5]);
    app.filter = "lowmem".into();
    assert_eq!(ids(&app), vec![3]);
    app.filter = "v:9".into();
    assert!(ids(&app).is_empty());
}

#[test]
fn tabs_by_number_tab_and_backtab() {
    let mut app = fixture::app(Lang::En, Screen::Overview);
    app.handle_key(ch('6'));
    assert_eq!(app.screen, Screen::Events);
    app.handle_key(key(KeyCode::Tab));
    assert_eq!(app.screen, Screen::Redundancy);
    app.handle_key(key(KeyCode::Tab));
    assert_eq!(app.screen, Screen::Overview);
    app.handle_key(key(KeyCode::BackTab));
    assert_eq!(app.screen, Screen::Redundancy);
    app.handle_key(ch('?'));
    assert_eq!(app.mode, Mode::Help);
    app.handle_key(ch('1'));
    // The key that closes help does nothing else.
    assert_eq!(
        (app.mode.clone(), app.screen),
        (Mode::Normal, Screen::Redundancy)
    );
    app.handle_key(ch('q'));
    assert!(app.quit);
}

#[test]
fn token_dialog_edits_ttl_and_creates() {
    let mut app = fixture::app(Lang::En, Screen::Overview);
    app.handle_key(ch('t'));
    assert_eq!(app.mode, Mode::TokenTtl("24h".into()));
    for _ in 0..3 {
        app.handle_key(key(KeyCode::Backspace));
    }
    app.handle_key(ch('7'));
    app.handle_key(ch('d'));
    app.handle_key(ch(' '));
    assert_eq!(
        app.handle_key(key(KeyCode::Enter)),
        Some(Command::CreateToken { ttl: "7d".into() })
    );
    app.apply(Update::TokenCreated(CreatedToken {
        token: "fm1_secret".into(),
        id: "abcd".into(),
        expires_at_ms: 1,
    }));
    assert!(matches!(app.mode, Mode::TokenShown(_)));
    app.handle_key(ch('x'));
    assert!(
        matches!(app.mode, Mode::TokenShown(_)),
        "only Enter/Esc close it"
    );
    app.handle_key(key(KeyCode::Esc));
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn selection_moves_and_clamps() {
    let mut app = fixture::app(Lang::En, Screen::Nodes);
    app.handle_key(key(KeyCode::PageDown));
    assert_eq!(app.node_sel, 6);
    app.handle_key(key(KeyCode::Home));
    assert_eq!(app.node_sel, 0);
    app.handle_key(key(KeyCode::Up));
    assert_eq!(app.node_sel, 0);
    // A shorter node list pulls the selection back in range.
    app.node_sel = 6;
    app.apply(Update::Nodes(
        fixture::nodes().into_iter().take(3).collect(),
    ));
    assert_eq!(app.node_sel, 2);
}

#[test]
fn events_are_kept_newest_first_without_duplicates() {
    let mut app = App::new(Lang::En, true, "x");
    let events = fixture::events();
    for e in events.iter().rev() {
        app.apply(Update::Event(e.clone()));
    }
    app.apply(Update::Event(events[3].clone()));
    let seqs: Vec<u64> = app.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=12).rev().collect::<Vec<_>>());
}

#[test]
fn detail_for_another_node_is_ignored() {
    let mut app = App::new(Lang::En, true, "x");
    assert_eq!(app.open_detail(2), Some(Command::Watch(Some(2))));
    app.apply(Update::Detail(fixture::detail()));
    assert!(
        app.detail.is_none(),
        "detail of node 1 while node 2 is open"
    );
}

#[test]
fn o_asks_to_approve_the_role_a_node_awaits_and_yes_sends_it() {
    let mut app = fixture::app(Lang::En, Screen::Nodes);
    app.node_sel = ids(&app).iter().position(|id| *id == 5).expect("node 5");
    assert_eq!(app.handle_key(ch('o')), None);
    assert!(matches!(&app.mode, Mode::Confirm(p)
        if p.action == NodeAction::ApproveRole(freimesh_proto::api::Role::Gateway) && p.node == 5));
    assert_eq!(
        app.handle_key(ch('y')),
        Some(Command::Node {
            action: NodeAction::ApproveRole(freimesh_proto::api::Role::Gateway),
            node: 5,
            hostname: "jugendzentrum".into(),
        })
    );
    // Withdrawing: node 5 has no approved role.
    assert_eq!(app.handle_key(ch('O')), None);
    assert!(matches!(app.mode, Mode::Normal));
    assert!(app.status.as_ref().is_some_and(|s| !s.ok));
}

#[test]
fn o_on_a_node_without_a_requested_role_only_says_so() {
    let mut app = fixture::app(Lang::De, Screen::Nodes);
    app.node_sel = ids(&app).iter().position(|id| *id == 1).expect("node 1");
    assert_eq!(app.handle_key(ch('o')), None);
    assert!(matches!(app.mode, Mode::Normal));
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some(Msg::NoRoleAwaits.text(Lang::De))
    );
}
