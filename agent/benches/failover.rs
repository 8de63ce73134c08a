//! How long local repair takes in the core: one link of a node goes down
//! (and comes back) while 10,000 prefixes route over it with an alternate.
//! The target is ≤ 1 ms for the switch.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use freimesh_agent::core::{ForwardingTable, Hop, LinkId};
use ipnet::IpNet;

const PREFIXES: u32 = 10_000;

/// 10,000 /32s spread over the hop lists a real node would have: each
/// prefix's primary is one of 8 neighbours, its alternate the next one.
fn table() -> ForwardingTable {
    let mut table = ForwardingTable::new();
    for i in 0..PREFIXES {
        let addr = IpAddr::V4(Ipv4Addr::from(0x0a63_0000 + i));
        let primary = usize::try_from(i % 8).unwrap_or(0);
        let hops = vec![
            Hop::Link(LinkId(primary)),
            Hop::Link(LinkId((primary + 1) % 8)),
        ];
        table.insert(IpNet::from(addr), hops).expect("route");
    }
    table
}

fn bench(c: &mut Criterion) {
    let mut t = table();
    c.bench_function("switch 10k prefixes: link down then up", |b| {
        b.iter(|| {
            let down = t.set_link_up(LinkId(3), false);
            let up = t.set_link_up(LinkId(3), true);
            black_box((down, up));
        })
    });
    let t = table();
    c.bench_function("lookup among 10k prefixes", |b| {
        let addr = IpAddr::V4(Ipv4Addr::new(10, 99, 17, 42));
        b.iter(|| black_box(t.lookup(black_box(addr))))
    });
    // What the feasible-source rule adds to every packet from a mesh
    // neighbour: one more lookup, on the source, and a scan of its hops.
    c.bench_function("feasible-source check among 10k prefixes", |b| {
        let src = IpAddr::V4(Ipv4Addr::new(10, 99, 17, 42));
        let from = Hop::Link(LinkId(3));
        b.iter(|| {
            black_box(
                t.lookup_group(black_box(src))
                    .is_some_and(|g| g.hops().contains(&from)),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
