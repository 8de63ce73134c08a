//! The admin API's event stream, agents' failover and traffic reports, TLS
//! and `promtool check metrics` on the live `/metrics`.

mod api_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_support::{Api, RawAgent, Stream, kinds, seeded};
use freimesh_agent::identity::PrivateKey;
use freimesh_controller::admin;
use freimesh_controller::api::TlsFiles;
use freimesh_proto::api;
use freimesh_proto::control::{self, AgentMsg, ControllerMsg};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_delivers_live_events_and_replays_from_since() {
    let api = Api::start().await;
    let mut live = Stream::open(&api, "", &[]).await;
    let sent = Instant::now();
    let (status, _) = api.post("/api/v1/nodes/2/drain", None).await;
    assert_eq!(status, 200);
    let (id, kind, event) = live.next().await;
    let took = sent.elapsed();
    assert_eq!(kind, "drained");
    assert_eq!(id, event.seq.to_string());
    assert_eq!(event.kind, api::EventKind::Drained { node: 2 });
    println!("event delivery (action request to SSE message): {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    for path in ["/api/v1/nodes/2/undrain", "/api/v1/nodes/4/approve"] {
        assert_eq!(api.post(path, None).await.0, 200);
    }
    assert_eq!(live.next().await.1, "undrained");
    assert_eq!(live.next().await.1, "approved");

    // A late client replays the history after `since`, then follows live.
    let mut replay = Stream::open(&api, &format!("?since={}", event.seq), &[]).await;
    assert_eq!(replay.next().await.1, "undrained");
    assert_eq!(replay.next().await.1, "approved");
    assert_eq!(api.post("/api/v1/nodes/3/revoke", None).await.0, 200);
    assert_eq!(replay.next().await.1, "revoked");
    assert_eq!(live.next().await.1, "revoked");

    // Last-Event-ID is honoured like `since`.
    let last = (event.seq + 1).to_string();
    let mut resumed = Stream::open(&api, "", &[("Last-Event-ID", &last)]).await;
    assert_eq!(resumed.next().await.1, "approved");
    assert_eq!(resumed.next().await.1, "revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_reports_failovers_and_traffic_reach_the_api() {
    let api = Api::start().await;
    let token = |db: &Path| admin::token_create(db, Duration::from_secs(600), &[]).expect("token");
    let (ka, kb) = (PrivateKey::generate(), PrivateKey::generate());
    let mut a = RawAgent::connect(&api, &ka, Some(token(&api.db)), "alpha").await;
    let mut b = RawAgent::connect(&api, &kb, Some(token(&api.db)), "beta").await;
    let nodes: Vec<api::Node> = api.json("/api/v1/nodes").await;
    let id_of = |name: &str| nodes.iter().find(|n| n.hostname == name).expect(name).id;
    let (ia, ib) = (id_of("alpha"), id_of("beta"));
    assert!(nodes.iter().filter(|n| n.online).count() == 2, "{nodes:?}");

    let measure = |peer, rtt, up| {
        AgentMsg::Report(control::Report {
            links: vec![control::LinkMeasurement {
                peer,
                rtt_us: rtt,
                loss_ppm: 0,
                up,
            }],
            candidates: vec![],
        })
    };
    // A link needs both ends: b measured it first (alone, nothing yet).
    b.send(&measure(ka.public(), 500, true)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let measure = |rtt, up| measure(kb.public(), rtt, up);
    a.send(&measure(500, true)).await;
    a.send(&measure(700, true)).await;
    a.send(&measure(700, false)).await;
    a.send(&AgentMsg::Events(vec![control::LinkEvent {
        peer: kb.public(),
        cause: api::DownCause::Silence,
        detection_ms: 150,
        switch_us: 40,
        rerouted: 3,
        lost: 1,
        age_ms: 2_000,
    }]))
    .await;
    a.send(&AgentMsg::Traffic(vec![control::LinkTraffic {
        peer: kb.public(),
        tx_bytes: 1_000,
        rx_bytes: 2_000,
    }]))
    .await;
    let sent_at = admin::unix_now_ms();

    let deadline = Instant::now() + Duration::from_secs(5);
    let detail: api::NodeDetail = loop {
        let d: api::NodeDetail = api.json(&format!("/api/v1/nodes/{ia}")).await;
        if !d.traffic.is_empty() {
            break d;
        }
        assert!(Instant::now() < deadline, "no traffic: {d:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (
            detail.traffic[0].peer,
            detail.traffic[0].tx_bytes,
            detail.traffic[0].rx_bytes
        ),
        (ib, 1_000, 2_000)
    );
    let link = &detail.links[0];
    assert!(!link.up);
    assert_eq!(link.rtt_history_us, vec![500, 700, 700]);

    use api::EventKind as K;
    let events: Vec<api::Event> = api.json("/api/v1/events").await;
    let (lo, hi) = (ia.min(ib), ia.max(ib));
    let expect = vec![
        K::Enrolled {
            node: ia,
            hostname: "alpha".into(),
        },
        K::Connected { node: ia },
        K::Enrolled {
            node: ib,
            hostname: "beta".into(),
        },
        K::Connected { node: ib },
        K::LinkUp { a: lo, b: hi },
        K::LinkDown { a: lo, b: hi },
        K::Failover {
            node: ia,
            peer: ib,
            cause: api::DownCause::Silence,
            detection_ms: 150,
            switch_us: 40,
            rerouted: 3,
            lost: 1,
        },
    ];
    // The join tokens the test created with the CLI functions are audited
    // as `token-created` whenever the registry poll sees them: not part of
    // the sequence under test.
    let seen: Vec<api::EventKind> = kinds(&events)
        .into_iter()
        .filter(|k| !matches!(k, K::TokenCreated { .. }))
        .collect();
    assert_eq!(seen, expect);
    let failover = events.last().expect("failover");
    // The agent said it happened 2 s before it sent it.
    let age = sent_at - failover.at_ms;
    assert!((1_900..3_000).contains(&age), "{age}");
    let ov: api::Overview = api.json("/api/v1/overview").await;
    assert_eq!(ov.failovers_total, 1);
    assert_eq!(ov.recent_failovers, vec![failover.clone()]);
    assert_eq!(ov.controller.sessions, 2);

    // Revoking a connected node closes its connection; it is offline after.
    assert_eq!(
        api.post(&format!("/api/v1/nodes/{ib}/revoke"), None)
            .await
            .0,
        200
    );
    loop {
        if let ControllerMsg::Error(e) = b.recv().await {
            assert_eq!(e.code, control::ErrorCode::Revoked);
            break;
        }
    }
    let node: api::Node = serde_json::from_str(&api.get(&format!("/api/v1/nodes/{ib}")).await.1)
        .map(|d: api::NodeDetail| d.node)
        .expect("detail");
    assert!(!node.online);
    assert!(node.last_seen_ms.is_some());
    let events: Vec<api::Event> = api.json("/api/v1/events").await;
    assert!(
        kinds(&events).ends_with(&[K::Revoked { node: ib }, K::Disconnected { node: ib }]),
        "{events:?}"
    );
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_the_api_with_a_self_signed_certificate() {
    let (dir, db, token, key) = seeded();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let (cert_path, key_path) = (dir.path().join("api.pem"), dir.path().join("api.key"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write key");
    let files = TlsFiles {
        cert: cert_path,
        key: key_path,
    };
    let api = Api::on(&db, token.clone(), key, Some(files)).await;
    let der = cert.cert.der().to_vec();
    let port = api.addr.port();
    let (status, body) = tokio::task::spawn_blocking(move || {
        let root = ureq::tls::Certificate::from_der(&der).to_owned();
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .root_certs(ureq::tls::RootCerts::new_with_certs(&[root]))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        let mut resp = agent
            .get(&format!("https://localhost:{port}/api/v1/nodes"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .expect("https request");
        (
            resp.status().as_u16(),
            resp.body_mut().read_to_string().expect("body"),
        )
    })
    .await
    .expect("blocking");
    assert_eq!(status, 200, "{body}");
    let nodes: Vec<api::Node> = serde_json::from_str(&body).expect("nodes");
    assert_eq!(nodes.len(), 4);
    // Plain HTTP on the TLS port gets no answer.
    let plain = tokio::task::spawn_blocking(move || {
        ureq::get(&format!("http://127.0.0.1:{port}/api/v1/nodes")).call()
    })
    .await
    .expect("blocking");
    assert!(plain.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_live_metrics() {
    let Ok(out) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing (Debian: apt-get install prometheus) and CI is set"
        );
        println!("note: promtool not on PATH; skipping `promtool check metrics`");
        return;
    };
    assert!(out.status.success());
    let api = Api::start().await;
    assert_eq!(api.post("/api/v1/nodes/2/drain", None).await.0, 200);
    let (status, body) = api.get("/metrics").await;
    assert_eq!(status, 200);
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(body.as_bytes()).expect("write");
    }
    let out = child.wait_with_output().expect("promtool");
    let mut report = String::from_utf8_lossy(&out.stdout).into_owned();
    report.push_str(&String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "promtool: {report}\n--- metrics ---\n{body}"
    );
    assert!(body.contains("freimesh_nodes"), "{body}");
    assert!(
        body.contains("freimesh_route_computation_seconds"),
        "{body}"
    );
}
