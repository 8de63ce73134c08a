//! Traffic for labs and the demo: a TCP echo server and a client that
//! pushes bytes through it and checks every one comes back.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use freimesh_agent::control::{self, AgentStatus, PingSummary, Request, Response};

/// Starts a TCP echo server on `127.0.0.1:0` in a background thread and
/// returns its address. It serves until the process ends.
pub fn spawn_echo_server() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the echo server")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || echo(stream));
        }
    });
    Ok(addr)
}

fn echo(mut stream: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Sends `size` bytes to an echo service at `addr` and checks they all come
/// back in order; returns the round-trip throughput in bits per second.
pub fn echo_roundtrip(addr: SocketAddr, size: usize, timeout: Duration) -> anyhow::Result<f64> {
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    let payload: Vec<u8> = (0..size)
        .map(|i| u8::try_from((i * 7 + i / 251) % 256).unwrap_or(0))
        .collect();
    let started = Instant::now();
    let mut writer = stream.try_clone()?;
    let to_send = payload.clone();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&to_send)?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    let mut received = Vec::with_capacity(size);
    let mut reader = stream;
    reader
        .read_to_end(&mut received)
        .with_context(|| format!("reading the echo from {addr}"))?;
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    let elapsed = started.elapsed();
    if received != payload {
        bail!(
            "echo through {addr} returned {} of {size} bytes, or in the wrong order",
            received.len()
        );
    }
    Ok(size as f64 * 8.0 / elapsed.as_secs_f64())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")
}

/// Asks the agent behind `socket` for its status.
pub fn status(socket: &Path) -> anyhow::Result<AgentStatus> {
    match runtime()?.block_on(control::request(socket, &Request::Status))? {
        Response::Status(status) => Ok(*status),
        other => bail!("unexpected answer from {}: {other:?}", socket.display()),
    }
}

/// Pings `target` from the userspace stack of the agent behind `socket`.
pub fn ping(socket: &Path, target: std::net::IpAddr, count: u16) -> anyhow::Result<PingSummary> {
    match runtime()?.block_on(control::request(socket, &Request::Ping { target, count }))? {
        Response::Ping(summary) => Ok(summary),
        Response::Error { message } => bail!("ping {target}: {message}"),
        other => bail!("unexpected answer from {}: {other:?}", socket.display()),
    }
}

/// Retries `f` until it succeeds or `timeout` passes (handshakes take a
/// moment after agents start).
pub fn retry<T>(timeout: Duration, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(err) if Instant::now() > deadline => return Err(err),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Polls `check` every 20 ms until it says yes; returns how long that
/// took, or fails naming `what` after `timeout`. A check that errs counts
/// as "not yet" (the thing it asks may not be up yet).
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if check().unwrap_or(false) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            anyhow::bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One TCP stream with iperf3 from namespace `client` to a server in
/// namespace `server` bound to `server_addr`; returns the receiver's bits
/// per second.
pub fn iperf3(
    lab: &crate::lab::Lab,
    client: &str,
    server: &str,
    server_addr: &str,
    seconds: u32,
) -> anyhow::Result<f64> {
    let mut daemon = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(server),
            "iperf3",
            "-s",
            "-1",
            "-B",
            server_addr,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting iperf3 -s")?;
    let output = retry(Duration::from_secs(5), || {
        let out = lab.try_exec(
            client,
            &[
                "iperf3",
                "-c",
                server_addr,
                "-t",
                &seconds.to_string(),
                "-J",
            ],
        )?;
        // iperf3 -J may exit 0 with an "error" field (e.g. the server is
        // not listening yet): only a report with a result counts.
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.contains("\"sum_received\"") {
            Ok(out)
        } else {
            bail!("iperf3 -c failed: {text}")
        }
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    let text = String::from_utf8_lossy(&output?.stdout).to_string();
    let tail = text
        .split("\"sum_received\"")
        .nth(1)
        .with_context(|| format!("no sum_received in: {text}"))?;
    tail.split("\"bits_per_second\":")
        .nth(1)
        .and_then(|s| s.split([',', '}']).next())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .with_context(|| format!("no bits_per_second in: {text}"))
}

/// Runs wireguard-tools' `wg` with `args`, feeding `stdin`; returns its
/// trimmed output. Used to prove interop (`wg pubkey`) and to configure
/// wireguard-go peers.
pub fn wg(args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("wg")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running wg (wireguard-tools)")?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    anyhow::ensure!(output.status.success(), "wg {args:?} failed");
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
