//! Keeps `docs/agent-config.md` true: runs every `sh` block of its
//! "Running a mesh by hand in network namespaces" walkthrough, in order, as
//! one script (in a scratch directory instead of /tmp/fm-lab), then checks
//! that pings cross the three hops. Root only. The walkthrough's namespace
//! names (`fm-a` … `fm-d`) are fixed by the docs; an exit trap removes them
//! and stops the agents whatever happens.

use std::path::Path;
use std::process::Command;

use freimesh_testbed::lab::require_root;
use freimesh_testbed::process::agent_binary;

const START: &str = "## Running a mesh by hand in network namespaces";
const END: &str = "## Variant: userspace nodes on loopback";

/// The `sh` code blocks between `START` and `END`.
fn walkthrough_blocks(markdown: &str) -> Vec<String> {
    let section = markdown
        .split(START)
        .nth(1)
        .and_then(|rest| rest.split(END).next())
        .expect("walkthrough section in docs/agent-config.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn namespace_walkthrough_in_the_docs_works() -> anyhow::Result<()> {
    if !require_root("docs_walkthrough") {
        return Ok(());
    }
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/agent-config.md");
    let markdown = std::fs::read_to_string(&docs)?;
    let blocks = walkthrough_blocks(&markdown);
    assert!(blocks.len() >= 7, "found only {} sh blocks", blocks.len());
    let dir = tempfile::tempdir()?;
    let lab = dir.path().join("fm-lab");
    let agent_dir = agent_binary()?
        .parent()
        .map(Path::to_path_buf)
        .expect("agent directory");

    let mut script = String::from(
        "set -eu\n\
         cleanup() { for f in \"$LAB\"/*.pid; do [ -f \"$f\" ] && kill \"$(cat \"$f\")\" 2>/dev/null || true; done; sleep 0.5;\n\
           for n in a b c d; do ip netns del fm-$n 2>/dev/null || true; done; }\n\
         trap cleanup EXIT\n",
    );
    // Steps 0–7 as written, then the checks, then the restart and clean-up.
    let (setup, rest) = blocks.split_at(blocks.len() - 2);
    for block in setup {
        script.push_str(block);
    }
    script.push_str(
        "for i in $(seq 1 50); do ip netns exec fm-a ping -c 1 -W 1 10.99.0.4 >/dev/null && break; sleep 0.2; done\n\
         ip netns exec fm-a ping -c 3 -i 0.2 -W 1 10.99.0.4\n\
         ip netns exec fm-d ping -c 3 -i 0.2 -W 1 fd99::1\n\
         freimesh-agent status --config a.toml\n",
    );
    for block in rest {
        script.push_str(block);
    }
    let script = script
        .replace("/tmp/fm-lab", &lab.to_string_lossy())
        .replace(
            "export PATH=\"/path/to/freimesh/target/release:$PATH\"",
            &format!("export PATH=\"{}:$PATH\"", agent_dir.display()),
        );
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("LAB", &lab)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "walkthrough failed:\n{stdout}\n{stderr}\nscript:\n{script}"
    );
    println!("{stdout}");
    assert!(
        stdout.contains("3 packets transmitted, 3 received"),
        "pings:\n{stdout}"
    );
    assert!(stdout.contains("10.99.0.4/32 via b*"), "status:\n{stdout}");
    let left = Command::new("ip").args(["netns", "list"]).output()?;
    assert!(
        !String::from_utf8_lossy(&left.stdout)
            .lines()
            .any(|l| l.starts_with("fm-a")),
        "the clean-up step left namespaces"
    );
    Ok(())
}
