//! `GET /gateways`, `GET /sites`, default routes and segments in
//! `GET /nodes/{id}/routes`, gateway counts in the overview, and the
//! site-added event when the CLI adds a site to a running controller.

mod api_support;

use std::time::{Duration, Instant};

use api_support::{Api, seeded};
use freimesh_controller::admin;
use freimesh_controller::store::Store;
use freimesh_proto::api;
use freimesh_proto::control::Roles;
use ipnet::IpNet;

#[tokio::test]
async fn gateways_sites_and_default_routes_over_the_api() {
    let (dir, db, token, key) = seeded();
    Store::open(&db)
        .expect("open")
        .set_roles(
            1,
            Roles {
                gateway: true,
                public_wifi: false,
            },
        )
        .expect("roles");
    Store::open(&db)
        .expect("open")
        .set_role_approval(1, api::Role::Gateway, true)
        .expect("approve");
    let lan: IpNet = "10.30.0.0/24".parse().expect("net");
    admin::site_add(&db, "library", 3, &[lan], None).expect("site");
    let mut api = Api::on(&db, token, key, None).await;
    api._dir = Some(dir);

    let gateways: Vec<api::Gateway> = api.json("/api/v1/gateways").await;
    assert_eq!(
        gateways,
        vec![api::Gateway {
            node: 1,
            hostname: "node1".into(),
            online: false,
            uplink_up: None,
        }]
    );
    let sites: Vec<api::Site> = api.json("/api/v1/sites").await;
    assert_eq!(sites.len(), 1);
    assert_eq!(sites[0].name, "library");
    assert_eq!(sites[0].via, 3);
    assert_eq!(sites[0].prefixes, vec![lan]);
    assert_eq!(
        sites[0].addresses,
        vec!["10.99.0.4/32".parse::<IpNet>().expect("net")]
    );

    let routes: Vec<api::Route> = api.json("/api/v1/nodes/3/routes").await;
    let default = routes
        .iter()
        .find(|r| r.prefix == "0.0.0.0/0".parse::<IpNet>().expect("net"))
        .expect("default route");
    assert_eq!(default.segment, api::Segment::Internet);
    assert_eq!(default.destination, 1);
    assert_eq!(default.via[0].node, 2);
    let building = routes
        .iter()
        .find(|r| r.prefix == "10.20.0.0/24".parse::<IpNet>().expect("net"));
    assert!(building.is_none(), "3 owns 10.20.0.0/24 itself");
    let site = routes.iter().find(|r| r.prefix == lan).expect("site route");
    assert_eq!(site.segment, api::Segment::Intranet);
    let routes_1: Vec<api::Route> = api.json("/api/v1/nodes/1/routes").await;
    let segment = |p: &str| {
        let p: IpNet = p.parse().expect("net");
        routes_1.iter().find(|r| r.prefix == p).map(|r| r.segment)
    };
    assert_eq!(segment("10.20.0.0/24"), Some(api::Segment::Intranet));
    assert_eq!(segment("10.99.0.3/32"), Some(api::Segment::Infrastructure));
    assert_eq!(segment("10.30.0.0/24"), Some(api::Segment::Intranet));
    // At the gateway itself, "deliver here" first.
    let own = routes_1
        .iter()
        .find(|r| r.prefix.prefix_len() == 0)
        .expect("gateway default");
    assert_eq!(own.via[0].node, 1);

    let overview: api::Overview = api.json("/api/v1/overview").await;
    assert_eq!(overview.gateways_total, 1);
    assert_eq!(overview.gateways_up, 0, "an offline gateway is not up");

    admin::site_add(
        &db,
        "school",
        2,
        &["10.31.0.0/24".parse().expect("net")],
        None,
    )
    .expect("site");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events: Vec<api::Event> = api.json("/api/v1/events").await;
        if events.iter().any(|e| {
            e.kind
                == api::EventKind::SiteAdded {
                    name: "school".into(),
                    via: 2,
                }
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "no site-added event: {events:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sites: Vec<api::Site> = api.json("/api/v1/sites").await;
    assert_eq!(sites.len(), 2);
    let metrics = api.get("/metrics").await.1;
    assert!(metrics.contains("freimesh_gateways 1\n"), "{metrics}");
    assert!(metrics.contains("freimesh_public_clients 0\n"), "{metrics}");
}
