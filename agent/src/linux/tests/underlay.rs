//! Carrier events and peer-to-interface lookups against the kernel, over a
//! veth pair (the `dummy` link type is not available on our machines).

use std::net::IpAddr;

use tokio::{sync::mpsc, time::timeout};

use super::*;
use crate::linux::{CarrierEvent, Change, underlay_interface, watch_carrier};

#[test]
fn carrier_events_follow_a_veth_pair() {
    in_netns("carrier_events_follow_a_veth_pair", || async {
        let netlink = Netlink::connect()?;
        add_veth("va", "vb").await?;
        let va = ifindex(&netlink, "va").await?.ok_or("no va")?;

        let (tx, mut rx) = mpsc::channel(64);
        let watcher = tokio::spawn(watch_carrier(tx));
        // The initial state comes first: va exists and is down.
        expect(&mut rx, va, false).await?;

        set_up(&netlink, "va", true).await?;
        set_up(&netlink, "vb", true).await?;
        expect(&mut rx, va, true).await?;
        // The peer going down takes va's carrier: what a pulled cable does.
        set_up(&netlink, "vb", false).await?;
        expect(&mut rx, va, false).await?;
        set_up(&netlink, "vb", true).await?;
        expect(&mut rx, va, true).await?;

        netlink.request(&wire::delete_link(va)).await?;
        expect(&mut rx, va, false).await?;

        // The watcher ends cleanly when nobody listens any more.
        drop(rx);
        timeout(KERNEL_TIMEOUT, watcher).await???;
        Ok(())
    });
}

#[test]
fn underlay_peer_maps_to_its_interface() {
    in_netns("underlay_peer_maps_to_its_interface", || async {
        let netlink = Netlink::connect()?;
        add_veth("va", "vb").await?;
        set_up(&netlink, "va", true).await?;
        set_up(&netlink, "vb", true).await?;
        let va = ifindex(&netlink, "va").await?.ok_or("no va")?;
        for address in [net("192.0.2.1/24"), net("2001:db8::1/64")] {
            netlink
                .apply(&Change::AddAddress(address), va, "va")
                .await?;
        }

        let peer: IpAddr = "192.0.2.2".parse()?;
        assert_eq!(underlay_interface(peer).await?, va);
        let mapped: IpAddr = "::ffff:192.0.2.2".parse()?;
        assert_eq!(underlay_interface(mapped).await?, va);
        let peer6: IpAddr = "2001:db8::2".parse()?;
        assert_eq!(underlay_interface(peer6).await?, va);

        let nowhere: IpAddr = "198.51.100.1".parse()?;
        let Err(error) = underlay_interface(nowhere).await else {
            return Err("a peer without route resolved".into());
        };
        assert_eq!(error.raw_os_error(), Some(libc::ENETUNREACH));
        assert!(
            error
                .to_string()
                .starts_with("looking up the route to 198.51.100.1: ")
        );
        Ok(())
    });
}

/// Expects, within the timeout, an event saying `ifindex` is `up`; other
/// interfaces' events (vb, lo) are skipped.
async fn expect(rx: &mut mpsc::Receiver<CarrierEvent>, ifindex: u32, up: bool) -> TestResult {
    loop {
        let event = timeout(KERNEL_TIMEOUT, rx.recv())
            .await
            .map_err(|_| format!("no carrier event for #{ifindex} (up: {up})"))?
            .ok_or("watcher stopped")?;
        if event.ifindex == ifindex {
            if event.carrier_up != up {
                return Err(format!("expected up={up}, got {event:?}").into());
            }
            return Ok(());
        }
    }
}
